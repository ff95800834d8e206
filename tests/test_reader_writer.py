"""napari reader and writer: every listed format, dataset folders, real files, samples."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tifffile
from _paths import DATASETS
from _readonly import read_only_view
from PIL import Image

from napari_tmunet._reader import napari_get_reader, read_images
from napari_tmunet._writer import LabelsNotSaved, write_labels
from napari_tmunet.data.images import read_image, read_mask

RNG = np.random.default_rng(0)


def _read(path):
    """What the reader gives for ``path``; through the getter for what napari sends it
    (TIFF, folders), directly for plain images (read here inside dataset folders only)."""
    if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"):
        return read_images(str(path))
    reader = napari_get_reader(str(path))
    assert reader is not None, f"no reader for {path}"
    return reader(str(path))


def _only_layer(path):
    layers = _read(path)
    assert len(layers) == 1
    return layers[0]


@pytest.fixture
def notifications():
    """Messages of the napari notifications shown during the test."""
    from napari.utils.notifications import notification_manager

    seen = []

    def record(event):
        seen.append(event.value if hasattr(event, "value") else event)

    notification_manager.notification_ready.connect(record)
    yield seen
    notification_manager.notification_ready.disconnect(record)


# --------------------------------------------------------------------------- formats
def _grey8():
    return RNG.integers(0, 256, (20, 30), dtype=np.uint8)


def _rgb8():
    return RNG.integers(0, 256, (20, 30, 3), dtype=np.uint8)


def _rgba8():
    return RNG.integers(0, 256, (20, 30, 4), dtype=np.uint8)


def _grey16():
    return RNG.integers(100, 40000, (20, 30), dtype=np.uint16)


def _float32():
    return (RNG.standard_normal((20, 30)) * 2.5).astype(np.float32)


def _pil(path, data):
    Image.fromarray(data).save(path)


def _tif(**kwargs):
    def write(path, data):
        tifffile.imwrite(path, data, **kwargs)

    return write


# name, suffix, array factory, writer, expected rgb, lossless
FORMATS = [
    ("png-grey", ".png", _grey8, _pil, False, True),
    ("png-rgb", ".png", _rgb8, _pil, True, True),
    ("png-rgba", ".png", _rgba8, _pil, True, True),
    ("png-16bit", ".png", _grey16, _pil, False, True),
    ("jpg-rgb", ".jpg", _rgb8, _pil, True, False),
    ("jpeg-grey", ".jpeg", _grey8, _pil, False, False),
    ("bmp-rgb", ".bmp", _rgb8, _pil, True, True),
    ("bmp-grey", ".bmp", _grey8, _pil, False, True),
    ("tif-grey", ".tif", _grey8, _tif(), False, True),
    ("tif-lzw-rgb", ".tif", _rgb8, _tif(compression="lzw", photometric="rgb"), True, True),
    ("tiff-16bit", ".tiff", _grey16, _tif(compression="zlib"), False, True),
    ("tif-float", ".tif", _float32, _tif(), False, True),
    ("tif-rgba", ".tif", _rgba8, _tif(photometric="rgb", extrasamples=[2]), True, True),
]


@pytest.mark.parametrize(
    "suffix, make, write, rgb, lossless",
    [f[1:] for f in FORMATS],
    ids=[f[0] for f in FORMATS],
)
def test_reader_formats(tmp_path, suffix, make, write, rgb, lossless):
    expected = make()
    path = tmp_path / f"img{suffix}"
    write(path, expected)

    data, kwargs, layer_type = _only_layer(path)

    assert layer_type == "image"
    assert kwargs["name"] == "img"
    assert kwargs["rgb"] is rgb
    assert data.shape == expected.shape and data.dtype == expected.dtype
    if lossless:
        np.testing.assert_array_equal(data, expected)
    if expected.dtype != np.uint8:  # 16-bit and float keep their range
        assert kwargs["contrast_limits"] == [float(expected.min()), float(expected.max())]


def test_reader_layers_are_valid_napari_layers(tmp_path):
    from napari.layers import Layer

    for name, suffix, make, write, *_ in FORMATS:
        path = tmp_path / f"{name}{suffix}"
        write(path, make())
        layer = Layer.create(*_only_layer(path))
        assert layer.name == name


def test_reader_multipage_tiff_is_a_stack(tmp_path):
    stack = RNG.integers(0, 4000, (5, 20, 30), dtype=np.uint16)
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack)  # (Z, H, W)

    data, kwargs, _ = _only_layer(path)

    np.testing.assert_array_equal(data, stack)
    assert kwargs["rgb"] is False


def test_reader_multipage_rgb_tiff(tmp_path):
    path = tmp_path / "rgbstack.tif"
    with tifffile.TiffWriter(path) as tif:  # pages written one by one, no shape metadata
        for _ in range(3):
            tif.write(_rgb8(), photometric="rgb", metadata=None)

    data, kwargs, _ = _only_layer(path)

    assert data.shape == (3, 20, 30, 3)
    assert kwargs["rgb"] is True


def test_reader_ome_tiff_pixel_size_sets_scale_and_units(tmp_path):
    from napari.layers import Layer

    path = tmp_path / "cells.ome.tif"
    tifffile.imwrite(
        path,
        _grey16(),
        ome=True,
        metadata={"axes": "YX", "PhysicalSizeY": 0.25, "PhysicalSizeX": 0.5},
    )

    data, kwargs, _ = _only_layer(path)

    assert kwargs["name"] == "cells.ome"
    assert kwargs["scale"] == pytest.approx((0.25, 0.5))
    layer = Layer.create(data, kwargs, "image")
    assert layer.scale == pytest.approx([0.25, 0.5])
    assert [str(u) for u in layer.units] == ["micrometer", "micrometer"]


def test_reader_ome_stack_scales_only_the_image_axes(tmp_path):
    path = tmp_path / "zstack.ome.tif"
    tifffile.imwrite(
        path,
        RNG.integers(0, 255, (4, 20, 30), dtype=np.uint8),
        ome=True,
        metadata={"axes": "ZYX", "PhysicalSizeY": 0.2, "PhysicalSizeX": 0.2},
    )

    _, kwargs, _ = _only_layer(path)

    assert kwargs["scale"] == pytest.approx((1.0, 0.2, 0.2))


def test_reader_png_without_pixel_size_has_no_scale(tmp_path):
    path = tmp_path / "plain.png"
    _pil(path, _grey8())
    assert "scale" not in _only_layer(path)[1]


def test_reader_reads_several_files(tmp_path):
    paths = [tmp_path / "a.tif", tmp_path / "b.tiff"]
    for p in paths:
        tifffile.imwrite(p, _grey8())
    reader = napari_get_reader([str(p) for p in paths])
    assert [kwargs["name"] for _, kwargs, _ in reader([str(p) for p in paths])] == ["a", "b"]


# --------------------------------------------------------------------------- getter
def _cannot_open(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "plain-dir").mkdir()
    (tmp_path / "images-only" / "images").mkdir(parents=True)
    _pil(tmp_path / "images-only" / "images" / "a.png", _grey8())


@pytest.mark.parametrize("name", ["notes.txt", "missing-dir/", "missing.tif"])
def test_getter_returns_none_for_what_it_cannot_open(tmp_path, name):
    _cannot_open(tmp_path)
    assert napari_get_reader(str(tmp_path / name)) is None


@pytest.mark.parametrize("name", ["plain-dir/", "images-only/"])
def test_getter_for_a_folder_with_nothing_to_open_gives_a_reader_saying_why(tmp_path, name):
    """napari calls the getter only for the reader chosen: a None would read "refused the
    file"; the reader returned raises the reason instead (``folder_problem``)."""
    from napari_tmunet._reader import folder_problem, reads

    _cannot_open(tmp_path)
    folder = tmp_path / name
    assert not reads(str(folder))
    reader = napari_get_reader(str(folder))
    with pytest.raises(ValueError, match="no images in this folder") as raised:
        reader([str(folder)], stack=False)
    assert str(raised.value) == folder_problem(folder)


def test_getter_never_raises_on_odd_input():
    assert napari_get_reader([]) is None
    assert napari_get_reader(["\0bad"]) is None
    assert napari_get_reader(42) is None


def test_corrupt_png_gives_a_notification_not_a_traceback(tmp_path, notifications):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)

    layers = _read(path)  # must not raise

    assert layers == [(None,)]  # napari's "read fine, no layer" sentinel
    assert any("broken.png" in str(n.message) for n in notifications)


def test_corrupt_file_through_the_viewer_opens_nothing(tmp_path, notifications, plugin_manager):
    from napari.components import ViewerModel

    path = tmp_path / "broken.tif"
    path.write_bytes(b"")
    viewer = ViewerModel()

    viewer.open(str(path), plugin="napari-tmunet")

    assert len(viewer.layers) == 0
    assert any("broken.tif" in str(n.message) for n in notifications)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".jpeg", ".bmp", ".PNG"])
def test_plain_images_are_left_to_napari(tmp_path, suffix, plugin_manager):
    """File > Open of a plain image: one reader (napari's), so no "Choose reader" dialog."""
    from napari.plugins import _npe2

    path = tmp_path / f"photo{suffix}"
    Image.fromarray(_rgb8()).save(path, format="JPEG" if "jp" in suffix.lower() else None)
    assert napari_get_reader(str(path)) is None
    assert list(_npe2.get_readers(str(path))) == ["napari"]
    tif = tmp_path / "stack.tif"
    tifffile.imwrite(tif, _grey8())
    assert "napari-tmunet" in _npe2.get_readers(str(tif))


def test_napari_and_this_reader_give_segment_the_same_input(tmp_path):
    """Segment's intensity rule (``to_model_input``) gives one result whichever reader
    opened the image: napari's for plain files, this one for TIFF and dataset folders."""
    from napari_builtins.io import napari_get_reader as builtin_reader

    from napari_tmunet.data.preprocess import to_model_input

    def model_input(array, channels):
        return to_model_input(np.asarray(array), channels, [0.5] * channels, [0.25] * channels)

    grey = _grey8()
    kinds = {
        "grey.png": grey,
        "grey16.png": _grey16(),
        "bit.png": grey > 127,
        "rgb.png": _rgb8(),
        "rgba.png": _rgba8(),
        "rgb.bmp": _rgb8(),
        "rgb.jpg": _rgb8(),
    }
    for name, array in kinds.items():
        path = tmp_path / name
        Image.fromarray(array).save(path)
        (builtin,) = builtin_reader(str(path))(str(path))
        (ours,) = read_images(str(path))
        for channels in (1, 3):
            np.testing.assert_allclose(
                model_input(builtin[0], channels), model_input(ours[0], channels), err_msg=name
            )
    one_bit = tmp_path / "bit.tif"  # a 1-bit TIFF, read here: same input as the bool array
    tifffile.imwrite(one_bit, grey > 127)
    ((data, _, _),) = _read(one_bit)
    np.testing.assert_array_equal(model_input(data, 1), model_input(grey > 127, 1))


# --------------------------------------------------------------------------- datasets
@pytest.fixture
def small_dataset(tmp_path):
    """ROOT/images + ROOT/masks with mixed formats, one image without a mask."""
    root = tmp_path / "dataset"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    masks = {}
    for name, image_suffix, mask_suffix in [("1", ".png", ".tif"), ("10", ".tif", ".png")]:
        _pil(root / "images" / f"{name}{image_suffix}", _rgb8())
        mask = np.zeros((20, 30), np.uint8)
        mask[5:15, 8:20] = 255
        mask[0, 0] = 40  # a stray value, background under the >127 rule
        Image.fromarray(mask).save(root / "masks" / f"{name}{mask_suffix}")
        masks[name] = mask > 127
    _pil(root / "images" / "2.bmp", _grey8())  # no mask yet
    return root, masks


def test_reader_dataset_folder(small_dataset, notifications):
    root, masks = small_dataset

    layers = _read(root)

    names = [kwargs["name"] for _, kwargs, _ in layers]
    assert names == ["1", "1 mask", "2", "10", "10 mask"]  # natural order, pairs together
    types = [layer_type for *_, layer_type in layers]
    assert types == ["image", "labels", "image", "image", "labels"]
    for data, kwargs, layer_type in layers:
        if layer_type == "labels":
            assert data.dtype == np.uint8
            np.testing.assert_array_equal(data, masks[kwargs["name"].split()[0]])
            # the image it belongs to, by which Metrics pairs it with that image's labels
            assert kwargs["metadata"]["image"] == kwargs["name"].split()[0]
    assert [kwargs["visible"] for _, kwargs, _ in layers] == [True, True, False, False, False]
    assert any("2.bmp" in str(n.message) for n in notifications)  # the unpaired image


def test_dataset_folder_through_the_viewer(small_dataset, plugin_manager):
    from napari.components import ViewerModel

    root, _ = small_dataset
    viewer = ViewerModel()
    viewer.open(str(root), plugin="napari-tmunet")
    assert [layer._type_string for layer in viewer.layers] == [
        "image",
        "labels",
        "image",
        "image",
        "labels",
    ]


def test_a_folder_of_images_of_different_sizes_opens_one_layer_each(
    tmp_path, plugin_manager, notifications
):
    """A clinic's folder of pictures (the three samples: JPEG, PNG, grey; three sizes):
    one layer per image, as File > Open Files gives (napari's own folder reader stacks
    them into one layer of the first one's size, which Segment cannot read); a broken
    file is reported. A folder of one size is left to napari (a stack of slices)."""
    from napari.components import ViewerModel

    from napari_tmunet._sample_data import load_sample

    folder = tmp_path / "my clinic images"
    folder.mkdir()
    shapes = {}
    for name, suffix in (("colonoscopy", ".jpg"), ("nuclei", ".png"), ("ultrasound", ".png")):
        image = load_sample(name)[0]
        Image.fromarray(image).save(folder / f"{name}{suffix}", quality=95)
        shapes[name] = image.shape
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    assert len({shape[:2] for shape in shapes.values()}) == 3
    viewer = ViewerModel()
    viewer.open(str(folder), plugin="napari-tmunet")
    assert [(layer.name, layer.data.shape) for layer in viewer.layers] == list(shapes.items())
    assert [layer.visible for layer in viewer.layers] == [True, False, False]
    assert any("broken.jpg" in str(n.message) for n in notifications)

    same = tmp_path / "slices"
    same.mkdir()
    for index in range(3):
        Image.fromarray(load_sample("ultrasound")[0]).save(same / f"z{index}.png")
    assert napari_get_reader(str(same)) is None


def test_dataset_with_a_corrupt_image_opens_the_rest(small_dataset, notifications):
    root, _ = small_dataset
    (root / "images" / "1.png").write_bytes(b"not a png")

    layers = _read(root)

    assert "1" not in [kwargs["name"] for _, kwargs, _ in layers]
    assert "10" in [kwargs["name"] for _, kwargs, _ in layers]
    assert any("1.png" in str(n.message) for n in notifications)


# --------------------------------------------------------------------------- writer
def test_writer_binary_png_is_0_255(tmp_path):
    labels = np.zeros((20, 30), np.int32)
    labels[3:9, 4:12] = 1

    written = write_labels(str(tmp_path / "mask.png"), labels, {})

    assert written == [str(tmp_path / "mask.png")]
    stored = np.asarray(Image.open(written[0]))
    assert stored.dtype == np.uint8 and set(np.unique(stored)) == {0, 255}
    mask, rule = read_mask(written[0])
    np.testing.assert_array_equal(mask, labels > 0)


@pytest.mark.parametrize("suffix", [".tif", ".tiff"])
def test_writer_instance_labels_go_to_uint16_tiff(tmp_path, suffix):
    labels = np.zeros((20, 30), np.int64)
    labels[2:6, 2:6] = 1
    labels[10:15, 10:20] = 300

    (path,) = write_labels(str(tmp_path / f"labels{suffix}"), labels, {})

    stored = tifffile.imread(path)
    assert stored.dtype == np.uint16
    np.testing.assert_array_equal(stored, labels)


def test_writer_png_stack_gives_one_mask_per_slice(tmp_path):
    """PNG holds one 2-D mask: a stack is saved as one file per slice, for a dataset folder."""
    labels = np.zeros((3, 20, 30), np.uint8)
    labels[1, 5:10, 5:10] = 1

    written = write_labels(str(tmp_path / "stack.png"), labels, {})

    assert [p.rsplit("/", 1)[-1] for p in written] == [
        "stack_000.png",
        "stack_001.png",
        "stack_002.png",
    ]
    for z, path in enumerate(written):
        np.testing.assert_array_equal(read_mask(path)[0], labels[z] > 0)


def test_writer_stack_never_replaces_existing_slice_files(tmp_path, plugin_manager):
    """Save "lesion.png" (absent, so napari's dialog asks nothing) for a stack, where the
    user's lesion_000.png and lesion_001.png exist: refused, naming them; nothing written."""
    import napari
    from napari.layers import Labels

    earlier = np.zeros((20, 30), np.uint8)
    earlier[2:6, 2:6] = 1
    for z in (0, 1):
        write_labels(str(tmp_path / f"lesion_{z:03d}.png"), earlier, {})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    stack = np.zeros((3, 20, 30), np.uint8)
    stack[:, 10:15, 10:20] = 1

    with pytest.raises(FileExistsError, match="lesion_000.png, lesion_001.png"):
        napari.save_layers(str(tmp_path / "lesion.png"), [Labels(stack)], plugin="napari-tmunet")

    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # lesion_002 neither
    written = write_labels(str(tmp_path / "other.png"), stack, {})  # a free name: written
    assert len(written) == 3


def test_writer_through_napari_save(tmp_path, plugin_manager):
    import napari
    from napari.layers import Labels

    labels = np.zeros((20, 30), np.uint8)
    labels[4:8, 4:8] = 1
    written = napari.save_layers(
        str(tmp_path / "saved.png"), [Labels(labels)], plugin="napari-tmunet"
    )
    assert written == [str(tmp_path / "saved.png")]
    np.testing.assert_array_equal(read_mask(written[0])[0], labels > 0)


def test_writer_on_a_read_only_folder_names_the_chosen_file(tmp_path, plugin_manager):
    """Save Selected Layers into a read-only folder: the error names the file the user
    chose and why, not the hidden temporary file beside it; nothing is written."""
    import napari
    from napari.layers import Labels

    from napari_tmunet.storage import NotWritableError

    folder = tmp_path / "masks"
    folder.mkdir()
    labels = [Labels(np.eye(8, dtype=np.uint8))]
    with read_only_view(folder) as view, pytest.raises(NotWritableError) as error:
        napari.save_layers(str(view / "m.png"), labels, plugin="napari-tmunet")
    message = str(error.value)
    assert message.startswith(f"cannot write {view / 'm.png'}: {view} is on a read-only")
    assert ".tmp" not in message and "choose another folder" in message
    assert not any(folder.iterdir())


def test_writer_where_a_file_is_in_the_way_names_it(tmp_path):
    """A folder path through a file (e.g. "notes.txt/m.png"): the error names the file
    that is in the way and the mask asked for."""
    from napari_tmunet.storage import NotWritableError

    in_the_way = tmp_path / "notes.txt"
    in_the_way.write_text("mine")
    for path in (in_the_way / "m.png", in_the_way / "sub" / "m.tif"):
        with pytest.raises(NotWritableError) as error:
            write_labels(str(path), np.eye(8, dtype=np.uint8), {})
        assert str(error.value) == (
            f"cannot write {path}: {in_the_way} is a file, not a folder; choose another folder"
        )
    assert in_the_way.read_text() == "mine"


def test_round_trip_mask_read_then_written(small_dataset, tmp_path):
    root, masks = small_dataset
    layers = _read(root)
    data, kwargs, _ = next(layer for layer in layers if layer[1]["name"] == "10 mask")

    (path,) = write_labels(str(tmp_path / "10.png"), data, kwargs)

    np.testing.assert_array_equal(read_mask(path)[0], masks["10"])


def _sample_masks():
    """Real masks: the nuclei sample's mask as binary 0/1 and split into instance ids."""
    from scipy import ndimage

    from napari_tmunet._sample_data import load_sample

    _, mask = load_sample("nuclei")
    instances, count = ndimage.label(mask)
    assert count > 10  # nuclei: many objects, ids above 255 not needed here
    return {"binary": mask.astype(np.uint8), "instances": instances.astype(np.int32)}


@pytest.mark.parametrize("kind", ["binary", "instances"])
def test_saved_tiff_mask_reopens_as_labels(tmp_path, plugin_manager, kind):
    """A mask saved with the writer comes back through the TM-UNet reader as the Labels it
    was (instance ids kept, binary 0/1), not as a grey image; a plain TIFF of the same
    values stays an image."""
    import napari
    from napari.components import ViewerModel
    from napari.layers import Labels

    labels = _sample_masks()[kind]
    (path,) = napari.save_layers(
        str(tmp_path / "corrected.tif"), [Labels(labels)], plugin="napari-tmunet"
    )
    tifffile.imwrite(tmp_path / "plain.tif", tifffile.imread(path))  # same pixels, no mark

    viewer = ViewerModel()
    (reopened,) = viewer.open(path, plugin="napari-tmunet")
    (plain,) = viewer.open(str(tmp_path / "plain.tif"), plugin="napari-tmunet")

    assert isinstance(reopened, Labels) and reopened.name == "corrected"
    np.testing.assert_array_equal(reopened.data, labels)
    assert reopened.metadata["output"] == kind
    assert plain._type_string == "image"


@pytest.mark.parametrize("kind", ["binary", "instances"])
def test_tiff_saved_by_naparis_writer_reopens_as_labels(tmp_path, plugin_manager, kind):
    """The Save dialog's preselected type is napari's own labels writer (an unmarked
    uint32 TIFF): the TM-UNet reader opens it as the same Labels, as napari's reader does;
    a 16-bit grey image of the same values stays an image."""
    from napari.components import ViewerModel
    from napari.layers import Labels
    from napari_builtins.io._write import napari_write_labels

    labels = _sample_masks()[kind]
    # napari's own labels writer, called directly: which writer save_layers(plugin=
    # "napari") reaches depends on the plugins registered earlier in the session
    path = napari_write_labels(str(tmp_path / "corrected.tif"), labels, {})
    assert tifffile.imread(path).dtype.itemsize >= 4  # napari's writer: wide integer ids
    tifffile.imwrite(tmp_path / "grey16.tif", labels.astype(np.uint16))

    viewer = ViewerModel()
    (reopened,) = viewer.open(path, plugin="napari-tmunet")
    (grey,) = viewer.open(str(tmp_path / "grey16.tif"), plugin="napari-tmunet")

    assert isinstance(reopened, Labels) and reopened.name == "corrected"
    np.testing.assert_array_equal(reopened.data, labels)
    assert grey._type_string == "image"


def test_instance_labels_saved_as_png_keep_their_ids(tmp_path, plugin_manager):
    """Instance labels saved under a .png name, as napari picks the writer (no plugin
    chosen): a 16-bit PNG with every id, read as foreground > 0 in a dataset folder,
    instead of napari's "No data written!"."""
    import napari
    from napari.layers import Labels

    instances = _sample_masks()["instances"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # napari warns "No data written!" when nothing is
        written = napari.save_layers(str(tmp_path / "nuclei.png"), [Labels(instances)])

    assert written == [str(tmp_path / "nuclei.png")]
    stored = np.asarray(Image.open(written[0]))
    assert stored.dtype == np.uint16
    np.testing.assert_array_equal(stored, instances)
    np.testing.assert_array_equal(read_mask(written[0])[0], instances > 0)


def test_labels_a_png_cannot_hold_are_refused_naming_the_layer(tmp_path, plugin_manager):
    """Ids above 65535 do not fit a PNG: napari shows an error naming the layer and the
    .tif to choose (a ValueError would become napari's "No data written!"); nothing
    written."""
    import napari
    from napari.layers import Labels

    labels = _sample_masks()["instances"].astype(np.uint32)
    labels[labels > 0] += 70000
    path = tmp_path / "nuclei.png"
    with pytest.raises(LabelsNotSaved, match=r"'big nuclei'.*70\d\d\d.*nuclei\.tif"):
        napari.save_layers(str(path), [Labels(labels, name="big nuclei")])
    assert not path.exists()


@pytest.mark.parametrize("kind", ["binary", "instances"])
def test_saved_tiff_stack_reopens_as_labels(tmp_path, plugin_manager, kind):
    """A Labels stack (as Segment gives for a multi-frame image) saved as .tif is one
    multi-page TIFF, marked as the 2-D masks are: it reopens through the TM-UNet reader as
    one Labels layer with the same (Z, H, W) labels and output kind, not as an image."""
    import napari
    from napari.components import ViewerModel
    from napari.layers import Labels

    frame = _sample_masks()[kind]
    stack = np.stack([frame, np.roll(frame, 7, axis=1), np.zeros_like(frame)])  # (Z, H, W)
    written = napari.save_layers(
        str(tmp_path / "frames.tif"), [Labels(stack)], plugin="napari-tmunet"
    )
    assert written == [str(tmp_path / "frames.tif")]

    (reopened,) = ViewerModel().open(written[0], plugin="napari-tmunet")

    assert isinstance(reopened, Labels) and reopened.name == "frames"
    np.testing.assert_array_equal(reopened.data, stack)
    assert reopened.metadata["output"] == kind


def test_saved_tiff_of_a_4d_labels_layer_keeps_its_shape(tmp_path):
    """(T, Z, H, W) labels come back (T, Z, H, W), not flattened to one stack axis."""
    frame = _sample_masks()["instances"][:40, :50]
    labels = np.stack([np.stack([frame, np.flipud(frame)])] * 3)  # (3, 2, 40, 50)
    write_labels(str(tmp_path / "tz.tif"), labels, {})
    data, _, layer_type = _only_layer(tmp_path / "tz.tif")
    assert layer_type == "labels" and data.shape == (3, 2, 40, 50)
    np.testing.assert_array_equal(data, labels)


def test_a_saved_tiff_mask_is_opened_once_when_read(tmp_path, monkeypatch):
    """Reading a mask the writer saved opens the file once for its kind, pixels, written
    shape and pixel size (not once for each), and still gives them all."""
    frame = _sample_masks()["instances"][:40, :50]
    labels = np.stack([np.stack([frame, np.flipud(frame)])] * 2)  # (2, 2, 40, 50): (T, Z, H, W)
    path = tmp_path / "sized.tif"
    write_labels(str(path), labels, {})
    with tifffile.TiffFile(path, mode="r+b") as tif:  # a pixel size, as a calibrated scan has
        page = tif.pages.first
        page.tags["XResolution"].overwrite((20000, 1))  # per cm: 0.5 um
        page.tags["YResolution"].overwrite((20000, 1))
        page.tags["ResolutionUnit"].overwrite(3)
    opened = []
    real = tifffile.TiffFile

    class CountingTiffFile(real):
        def __init__(self, arg, *args, **kwargs):
            opened.append(str(arg))
            super().__init__(arg, *args, **kwargs)

    monkeypatch.setattr(tifffile, "TiffFile", CountingTiffFile)
    data, kwargs, layer_type = _only_layer(tmp_path / "sized.tif")
    assert opened == [str(path)]
    assert layer_type == "labels" and data.shape == (2, 2, 40, 50)
    np.testing.assert_array_equal(data, labels)
    assert kwargs["metadata"]["output"] == "instances"
    assert kwargs["scale"] == pytest.approx((1.0, 1.0, 0.5, 0.5))


def test_a_saved_mask_reopens_over_its_calibrated_image(make_napari_viewer, tmp_path):
    """File > Open an ImageJ TIFF with 0.25 um pixels, add the mask on it (as Segment does:
    the image's scale and units), File > Save Selected Layers with the TM-UNet writer as
    .tif, File > Open the mask: it comes back with the image's scale and units, so it lies
    over the image (not 4x larger), ids intact; the TIFF's own resolution tags say 0.25 um
    too, for other programs."""
    from napari.layers import Labels

    from napari_tmunet._sample_data import load_sample
    from napari_tmunet.data.images import read_pixel_size

    image, _ = load_sample("nuclei")
    picture = tmp_path / "he_um.tif"
    tifffile.imwrite(picture, image, imagej=True, resolution=(4.0, 4.0), metadata={"unit": "um"})
    viewer = make_napari_viewer()
    (opened,) = viewer.open(str(picture), plugin="napari-tmunet")
    assert opened.scale == pytest.approx([0.25, 0.25])
    instances = _sample_masks()["instances"]
    viewer.add_labels(instances, name="he_um_mask", scale=opened.scale, units=opened.units)
    path = tmp_path / "he_um_mask.tif"

    viewer.layers.save(str(path), selected=True, plugin="napari-tmunet")
    (reopened,) = viewer.open(str(path), plugin="napari-tmunet")

    assert isinstance(reopened, Labels) and reopened.name.startswith("he_um_mask")
    np.testing.assert_array_equal(reopened.data, instances)
    assert reopened.scale == pytest.approx(opened.scale)
    assert [str(u) for u in reopened.units] == ["micrometer", "micrometer"]
    np.testing.assert_allclose(reopened.extent.world, opened.extent.world)
    *size, unit = read_pixel_size(path)
    assert size == pytest.approx([0.25, 0.25]) and unit == "µm"


PLACEMENTS = {  # name: (labels shape, Labels kwargs)
    "offset": ((40, 50), {"scale": (0.5, 0.5), "translate": (100.0, 50.0), "units": "um"}),
    "anisotropic-nm": ((40, 50), {"scale": (0.5, 0.3), "units": "nm"}),
    "no-unit": ((40, 50), {"scale": (2.0, 3.0), "translate": (-4.0, 7.5)}),
    "stack": (
        (3, 40, 50),
        {"scale": (2.0, 0.25, 0.25), "translate": (1.0, 10.0, 0.0), "units": "um"},
    ),
}


@pytest.mark.parametrize("name", list(PLACEMENTS))
def test_a_saved_tiff_mask_keeps_its_layers_placement(tmp_path, plugin_manager, name):
    """Scale (any unit, none, per axis), translate and units of the Labels layer saved with
    the TM-UNet writer come back when the TIFF is reopened through the TM-UNet reader; a
    stack stays one layer of the same shape."""
    import napari
    from napari.components import ViewerModel
    from napari.layers import Labels

    shape, place = PLACEMENTS[name]
    frame = _sample_masks()["instances"][: shape[-2], : shape[-1]]
    labels = np.broadcast_to(frame, shape).copy()
    layer = Labels(labels, **place)
    (path,) = napari.save_layers(str(tmp_path / "placed.tif"), [layer], plugin="napari-tmunet")

    (reopened,) = ViewerModel().open(path, plugin="napari-tmunet")

    np.testing.assert_array_equal(reopened.data, labels)
    assert reopened.scale == pytest.approx(layer.scale)
    assert reopened.translate == pytest.approx(layer.translate)
    assert [str(u) for u in reopened.units] == [str(u) for u in layer.units]


def test_a_png_mask_opened_as_labels_saves_as_png_again(tmp_path):
    """A 0/255 PNG mask opened as Labels (napari's reader, no metadata) holds one label
    value, 255: it is binary and saves as a 0/255 PNG again, not refused as instances."""
    from PIL import Image

    binary = _sample_masks()["binary"] > 0
    first = tmp_path / "mask.png"
    write_labels(str(first), binary.astype(np.uint8), {"metadata": {"output": "binary"}})
    reopened = np.asarray(Image.open(first))  # as napari's PNG reader gives it
    assert set(np.unique(reopened)) == {0, 255}
    again = tmp_path / "mask2.png"
    write_labels(str(again), reopened, {"metadata": {}})
    np.testing.assert_array_equal(np.asarray(Image.open(again)), reopened)


# --------------------------------------------------------------------------- real files
needs_datasets = pytest.mark.skipif(not DATASETS.is_dir(), reason=f"no datasets at {DATASETS}")


@needs_datasets
def test_real_clinicdb_frame():
    data, kwargs, _ = _only_layer(DATASETS / "CVC-ClinicDB" / "images" / "1.png")
    assert data.shape == (288, 384, 3) and data.dtype == np.uint8
    assert kwargs["rgb"] is True


@needs_datasets
def test_real_monuseg_lzw_rgb_tiff():
    name = (DATASETS / "MoNuSeg" / "train.txt").read_text().split()[0]
    path = DATASETS / "MoNuSeg" / "images" / f"{name}.tif"
    with tifffile.TiffFile(path) as tif:
        assert tif.pages.first.compression == tifffile.COMPRESSION.LZW

    data, kwargs, _ = _only_layer(path)

    assert data.shape == (1000, 1000, 3) and data.dtype == np.uint8
    assert kwargs["rgb"] is True


@needs_datasets
def test_real_udiat_grey_png():
    path = DATASETS / "UDIAT" / "images" / "000001.png"
    data, kwargs, _ = _only_layer(path)
    assert data.ndim == 2 and data.dtype == np.uint8
    assert kwargs["rgb"] is False and kwargs["contrast_limits"] == [0.0, 255.0]
    np.testing.assert_array_equal(data, read_image(path))


# --------------------------------------------------------------------------- samples
@pytest.mark.parametrize(
    "modality, rgb", [("colonoscopy", True), ("nuclei", True), ("ultrasound", False)]
)
def test_samples_load_with_their_masks(modality, rgb):
    from napari_tmunet import _sample_data

    image, mask = _sample_data.load_sample(modality)
    assert image.dtype == np.uint8 and (image.ndim == 3) is rgb
    assert mask.shape == image.shape[:2] and mask.dtype == np.uint8
    assert set(np.unique(mask)) == {0, 1}

    (img_data, img_kw, img_type), (lab_data, lab_kw, lab_type) = getattr(
        _sample_data, f"{modality}_sample"
    )()
    assert (img_type, lab_type) == ("image", "labels")
    assert lab_kw["name"] == f"{img_kw['name']} mask"
    np.testing.assert_array_equal(lab_data, mask)


@pytest.mark.parametrize("modality", ["colonoscopy", "nuclei", "ultrasound"])
def test_samples_open_through_the_manifest(modality, plugin_manager):
    from napari.components import ViewerModel

    viewer = ViewerModel()
    viewer.open_sample("napari-tmunet", modality)

    assert [layer._type_string for layer in viewer.layers] == ["image", "labels"]
    assert viewer.layers[1].name == f"{viewer.layers[0].name} mask"


def test_sample_sizes_and_package_budget():
    from napari_tmunet import _sample_data

    assert _sample_data.load_sample("colonoscopy")[0].shape == (288, 384, 3)
    assert _sample_data.load_sample("nuclei")[0].shape == (256, 256, 3)
    files = [p for p in _sample_data.SAMPLES_DIR.iterdir() if p.suffix == ".png"]
    assert len(files) == 2 * len(_sample_data.SAMPLES)
    assert "CC BY-NC-SA 4.0" in (_sample_data.SAMPLES_DIR / "LICENSE").read_text()
    assert sum(p.stat().st_size for p in files) < 1.5e6


@needs_datasets
@pytest.mark.parametrize("modality", ["colonoscopy", "nuclei", "ultrasound"])
def test_samples_match_their_source(modality):
    """The shipped files are exactly the crops that bench/make_samples.py cuts."""
    from napari_tmunet._sample_data import SAMPLES, load_sample

    spec = SAMPLES[modality]
    root = DATASETS / spec.dataset
    (image_path,) = (root / "images").glob(f"{spec.name}.*")
    (mask_path,) = (root / "masks").glob(f"{spec.name}.*")
    source, source_mask = read_image(image_path), read_mask(mask_path)[0]
    if spec.crop is not None:
        y0, x0, h, w = spec.crop
        source, source_mask = (
            source[y0 : y0 + h, x0 : x0 + w],
            source_mask[y0 : y0 + h, x0 : x0 + w],
        )

    image, mask = load_sample(modality)
    np.testing.assert_array_equal(image, source[..., :3] if source.ndim == 3 else source)
    np.testing.assert_array_equal(mask, source_mask)


# --------------------------------------------------------------------------- CMYK
@needs_datasets
def test_a_cmyk_tiff_opens_as_rgb_through_the_viewer(tmp_path, plugin_manager):
    """A CMYK TIFF (a real ClinicDB frame saved as CMYK): napari would draw its black ink
    as alpha (a black picture); the reader converts it to RGB as Pillow does and says so."""
    from napari.components import ViewerModel

    frame = Image.open(DATASETS / "CVC-ClinicDB" / "images" / "1.png").convert("RGB")
    path = tmp_path / "frame cmyk.tif"
    frame.convert("CMYK").save(path)
    viewer = ViewerModel()

    (layer,) = viewer.open(str(path), plugin="napari-tmunet")

    assert layer.rgb and layer.data.shape == (288, 384, 3)
    expected = np.asarray(frame.convert("CMYK").convert("RGB"))  # Pillow's conversion
    np.testing.assert_array_equal(layer.data, expected)
    assert np.abs(layer.data.astype(int) - np.asarray(frame)).mean() < 2  # the picture
    assert layer.metadata["colour_conversion"] == "CMYK image: converted to RGB"
    assert layer.metadata["path"] == str(path)


def test_a_cmyk_tiff_stack_opens_as_rgb_and_rgb_tiffs_are_untouched(tmp_path):
    inks = RNG.integers(0, 256, (3, 8, 9, 4), dtype=np.uint8)  # (Z, H, W, CMYK)
    tifffile.imwrite(tmp_path / "inks.tif", inks, photometric="separated")
    tifffile.imwrite(tmp_path / "rgba.tif", inks, photometric="rgb")

    data, kwargs, _ = _only_layer(tmp_path / "inks.tif")
    expected = [np.asarray(Image.fromarray(page, "CMYK").convert("RGB")) for page in inks]
    np.testing.assert_array_equal(data, np.stack(expected))
    assert kwargs["metadata"]["colour_conversion"]

    data, kwargs, _ = _only_layer(tmp_path / "rgba.tif")  # RGBA stays RGBA
    np.testing.assert_array_equal(data, inks)
    assert "colour_conversion" not in kwargs["metadata"]


def test_a_float_cmyk_tiff_is_shown_as_stored_with_a_warning(tmp_path, notifications):
    """Ink amounts that are not unsigned integers have no maximum to convert from."""
    inks = RNG.random((8, 9, 4), dtype=np.float32)
    tifffile.imwrite(tmp_path / "inks.tif", inks, photometric="separated")

    data, kwargs, _ = _only_layer(tmp_path / "inks.tif")

    np.testing.assert_array_equal(data, inks)
    assert "colour_conversion" not in kwargs["metadata"]
    (note,) = [str(n.message) for n in notifications if "inks.tif" in str(n.message)]
    assert "shown as stored" in note and "save it as RGB" in note


def test_a_cmyk_jpeg_in_a_dataset_folder_says_it_was_converted(tmp_path):
    rgb = _rgb8()
    for part in ("images", "masks"):
        (tmp_path / part).mkdir()
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "images" / "a.jpg", quality=95)
    Image.fromarray((rgb[..., 0] > 127).astype(np.uint8) * 255).save(tmp_path / "masks" / "a.png")

    image, _mask = napari_get_reader(str(tmp_path))(str(tmp_path))

    assert image[0].shape == rgb.shape
    assert image[1]["metadata"]["colour_conversion"] == "CMYK image: converted to RGB"
