"""Opening a folder reads each file's header once and decodes each file once (helper 157):
headers are kept per file version (``data.images.read_header``), a lone mask judged by
its pixels is not decoded again to open it, and a dataset folder's sizes are read only
for the 25 pairs that open, not for the whole folder. The launcher opens a folder's
layers with one update of napari's scene. Real CVC-ClinicDB frames and masks."""

from __future__ import annotations

import collections
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from _clinic_frames import numbered_dataset, paired_folder
from _paths import DATASETS

from napari_tmunet import launch
from napari_tmunet._reader import MAX_FOLDER_PAIRS, napari_get_reader
from napari_tmunet.data import budget, images

CLINIC = DATASETS / "CVC-ClinicDB"
needs_clinic = pytest.mark.skipif(
    not (CLINIC / "images").is_dir(), reason=f"no CVC-ClinicDB at {DATASETS}"
)


@pytest.fixture
def reads(monkeypatch):
    """Per file name: how often its header was read (``data.budget.read_header``, what
    ``data.images.read_header`` reads), its pixels decoded, its writer's mark looked for
    (``data.images._mask_kind``: an open TIFF's description parsed)."""
    counts = {what: collections.Counter() for what in ("header", "decode", "mark")}

    def counted(what, function, name_of):
        def run(*args, **kwargs):
            counts[what][name_of(*args)] += 1
            return function(*args, **kwargs)

        return run

    def file_name(path, *_):
        return Path(path).name

    monkeypatch.setattr(budget, "read_header", counted("header", budget.read_header, file_name))
    monkeypatch.setattr(images, "_read_pillow", counted("decode", images._read_pillow, file_name))
    monkeypatch.setattr(images, "_read_tiff", counted("decode", images._read_tiff, file_name))
    tiff_name = lambda tif: Path(tif.filehandle.path).name  # noqa: E731
    monkeypatch.setattr(images, "_mask_kind", counted("mark", images._mask_kind, tiff_name))
    return counts


def _more_than_once(counts: dict) -> dict:
    """{what: {file: times}} of the files read more than once."""
    more = {what: {f: n for f, n in c.items() if n > 1} for what, c in counts.items()}
    return {what: files for what, files in more.items() if files}


def _read(folder: Path) -> list:
    """The layers the reader opens of ``folder``, less the null sentinel."""
    return [layer for layer in napari_get_reader(str(folder))(str(folder)) if len(layer) == 3]


@needs_clinic
def test_a_paired_folder_reads_each_file_once_as_the_launcher_opens_it(tmp_path, reads):
    """24 pictures with their masks, a mask without its picture (25_mask.tif, the 25th
    entry), then 2 more pairs past the 25 that open: the launcher's checks and the reader
    read each header once and decode each file once (main: a picture's header 3 times, a
    mask's 3 times, its mark twice, the lone mask decoded twice); the 2 pairs are not read."""
    folder = paired_folder(tmp_path / "frames", 24, lone=1)
    for k in (26, 27):
        shutil.copy(folder / "1.png", folder / f"{k}.png")
        shutil.copy(folder / "1_mask.tif", folder / f"{k}_mask.tif")

    args = launch.build_parser().parse_args([str(folder)])
    assert launch._paths_problem(args) is None and launch._tmunet_reads(str(folder))
    layers = _read(folder)

    assert len(layers) == 2 * 24 + 1
    lone = next(layer for layer in layers if layer[1]["name"] == "25 mask")
    assert lone[2] == "labels" and lone[0].any() and set(np.unique(lone[0])) <= {0, 1}
    assert _more_than_once(reads) == {}
    for what in ("header", "decode"):  # every file opened was read, each once
        assert {f for f in reads[what]} == {f"{k}.png" for k in range(1, 25)} | {
            f"{k}_mask.tif" for k in range(1, 26)
        }, what
    assert not any(name.startswith(("26", "27")) for c in reads.values() for name in c)


@needs_clinic
def test_a_dataset_folder_reads_the_sizes_of_the_pairs_that_open_only(
    tmp_path, reads, notifications
):
    """27 pairs, the masks of pairs 3 and 27 of another size: pair 3 (of the 25 that
    open) opens its image alone, the warning naming its mask's size; pair 27 is not read
    (main read all 54 headers, and each opened file's 3 times), nor said."""
    root = numbered_dataset(tmp_path / "clinic", 27)
    for k in (3, 27):
        mask = tifffile.imread(root / "masks" / f"{k}.tif")
        tifffile.imwrite(root / "masks" / f"{k}.tif", mask[:-8])

    layers = _read(root)

    names = [layer[1]["name"] for layer in layers]
    assert len(names) == MAX_FOLDER_PAIRS + MAX_FOLDER_PAIRS - 1
    assert "3" in names and "3 mask" not in names and "2 mask" in names
    warned = [text for severity, text in notifications if "warning" in severity]
    skipped = next(text for text in warned if "skipped" in text)
    assert "3.tif is 280x384" in skipped and "27.tif" not in skipped
    assert _more_than_once(reads) == {}
    assert not any(name.startswith(("26.", "27.")) for c in reads.values() for name in c)


@needs_clinic
def test_a_file_rewritten_is_read_again(tmp_path):
    """A header is kept per version of its file: a mask rewritten at another size (and
    byte count) gives its new size."""
    mask = tmp_path / "1.tif"
    shutil.copy(CLINIC / "masks" / "1.tif", mask)
    assert images.image_shape(mask) == (288, 384)
    tifffile.imwrite(mask, tifffile.imread(mask)[:100])
    assert images.image_shape(mask) == (100, 384)


@needs_clinic
def test_the_launcher_opens_a_folder_with_its_layers_drawn(tmp_path, make_napari_viewer):
    """``napari-tmunet FOLDER`` opens the folder's layers with one update of napari's scene
    at the end (``LayerList.batched_update``): every layer has its visual on the canvas,
    the first pair shown, the others hidden, as before."""
    folder = paired_folder(tmp_path / "frames", 3)
    viewer = make_napari_viewer(show=True)

    launch._open_paths(viewer, [str(folder)])

    canvas = viewer.window._qt_viewer.canvas
    assert [layer.name for layer in viewer.layers] == ["1", "1 mask", "2", "2 mask", "3", "3 mask"]
    assert [layer.visible for layer in viewer.layers] == [True, True] + [False] * 4
    view = canvas.view.scene
    assert all(canvas.layer_to_visual[layer].node.parent is view for layer in viewer.layers)
    assert not canvas._pause_scene_graph
