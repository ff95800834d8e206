"""The big-folder warning's launcher command runs as pasted (helper 151): it names the
folder absolute and ``--from N``, which opens the folder's pictures from the N-th with
their masks by the reader's own order and pairing, as many as a folder opens, and warns
again with the command for the next ones. Real CVC-ClinicDB frames and masks."""

from __future__ import annotations

import shutil

import pytest
from _clinic_frames import besides_mask_rules, clinic_stems, numbered_dataset, paired_folder
from _launcher import launcher_words, open_as_launcher
from _paths import DATASETS, dataset_subset

from napari_tmunet import launch
from napari_tmunet._reader import napari_get_reader, read_from

CLINIC = DATASETS / "CVC-ClinicDB"
needs_clinic = pytest.mark.skipif(
    not (CLINIC / "images").is_dir(), reason=f"no CVC-ClinicDB at {DATASETS}"
)


@pytest.fixture
def warnings():
    """The napari warnings shown during the test, less the masks' rule warnings
    (``besides_mask_rules``)."""
    from napari.utils.notifications import notification_manager

    seen = []

    def record(event):
        note = event.value if hasattr(event, "value") else event
        if "warning" in str(note.severity).lower() and besides_mask_rules([str(note.message)]):
            seen.append(str(note.message))

    notification_manager.notification_ready.connect(record)
    yield seen
    notification_manager.notification_ready.disconnect(record)


@needs_clinic
def test_a_large_dataset_opens_range_by_range_from_the_pasted_commands(
    tmp_path, monkeypatch, warnings, make_napari_viewer
):
    """A dataset folder "polyps set" of 55 pairs opened by a relative path: its warning's
    command (absolute, the space quoted) works from another folder and opens pictures 26
    to 50 with their masks, warning with the command for 51 on, which opens the last 5 and
    warns no more."""
    root = numbered_dataset(tmp_path / "work" / "polyps set", 55)
    monkeypatch.chdir(tmp_path / "work")
    napari_get_reader("polyps set")("polyps set")
    (first,) = warnings
    assert first.startswith("polyps set: opened the first 25 of 55 images: ")
    words = launcher_words(first)
    assert words == [str(root), "--from", "26"]

    monkeypatch.chdir(tmp_path)  # pasted elsewhere: the folder is absolute
    viewer = make_napari_viewer()
    pairs = [
        (name, kind)
        for k in range(26, 51)
        for name, kind in ((f"{k}", "image"), (f"{k} mask", "labels"))
    ]
    assert open_as_launcher(viewer, words) == pairs
    assert viewer.layers["26"].visible and not viewer.layers["27"].visible
    assert viewer.layers["26 mask"].metadata["image"] == "26"
    second = warnings[1]
    assert second.startswith(f"{root}: opened images 26 to 50 of 55 images: ")
    assert launcher_words(second) == [str(root), "--from", "51"]

    assert open_as_launcher(viewer, launcher_words(second)) == [
        (name, kind)
        for k in range(51, 56)
        for name, kind in ((f"{k}", "image"), (f"{k} mask", "labels"))
    ]
    assert len(warnings) == 2  # the last range: nothing left to say


@needs_clinic
def test_a_paired_folders_command_opens_the_next_pictures_and_lone_masks(
    tmp_path, warnings, make_napari_viewer
):
    """A folder of 28 pictures with their masks beside them and 4 masks alone: the
    command opens pictures 26 to 28 with their masks and the lone masks, as the folder
    opened whole would, by the reader's own pairing."""
    folder = paired_folder(tmp_path / "paired", pairs=28, lone=4)
    napari_get_reader(str(folder))(str(folder))
    (warning,) = warnings
    assert "opened the first 25 of 32 pictures and their masks" in warning
    viewer = make_napari_viewer()
    assert open_as_launcher(viewer, launcher_words(warning)) == [
        ("26", "image"), ("26 mask", "labels"), ("27", "image"), ("27 mask", "labels"),
        ("28", "image"), ("28 mask", "labels"),
        ("29 mask", "labels"), ("30 mask", "labels"), ("31 mask", "labels"), ("32 mask", "labels"),
    ]  # fmt: skip


@needs_clinic
def test_from_is_refused_before_napari_starts_without_one_folder(tmp_path):
    """``--from`` needs one folder and a position from 1, said before a window opens."""
    parse = launch.build_parser().parse_args
    picture = tmp_path / "a.png"
    shutil.copy(CLINIC / "images" / f"{clinic_stems(1)[0]}.png", picture)
    problem = launch._paths_problem(parse([str(picture), "--from", "2"]))
    assert "give one folder (napari-tmunet FOLDER --from N)" in problem
    assert "from 1" in launch._paths_problem(parse([str(tmp_path), "--from", "0"]))
    shutil.copy(CLINIC / "masks" / f"{clinic_stems(1)[0]}.tif", tmp_path / "a_mask.tif")
    assert launch._paths_problem(parse([str(tmp_path), "--from", "1"])) is None


@needs_clinic
def test_from_past_the_last_picture_names_how_many_there_are(tmp_path):
    root = dataset_subset(CLINIC, tmp_path / "set", clinic_stems(3))
    with pytest.raises(ValueError, match=r"set has 3 images: --from takes a position from 1 to 3"):
        read_from(str(root), 3)


@needs_clinic
def test_a_folder_of_images_of_different_sizes_opens_the_next_ones_from_itslauncher_words(
    tmp_path, warnings, make_napari_viewer
):
    """52 images of two sizes (no masks): the warning's command opens images 51 and 52."""
    from napari_tmunet.data.images import read_image, write_image

    folder = tmp_path / "mixed"
    folder.mkdir()
    frame = CLINIC / "images" / f"{clinic_stems(1)[0]}.png"
    crop = read_image(frame)[:100]  # another size
    for k in range(1, 53):
        if k % 2:
            shutil.copy(frame, folder / f"{k:03d}.png")
        else:
            write_image(folder / f"{k:03d}.png", crop)
    napari_get_reader(str(folder))(str(folder))
    (warning,) = warnings
    assert "opened the first 50 of 52 images" in warning
    viewer = make_napari_viewer()
    assert open_as_launcher(viewer, launcher_words(warning)) == [("051", "image"), ("052", "image")]
