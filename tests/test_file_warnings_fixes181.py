"""The core's warnings about a file opened in napari reach the window (tester39 #5): File >
Open Folder on a CVC-ClinicDB copy logged "masks/1.tif: the mask rule '>127' leaves out
30% of its non-zero pixels ..." on the terminal only, which a napari started from a
desktop launcher does not have. The reader and the launcher show each such warning once,
in one napari warning naming the file; the terminal still gets it once. Real CVC-ClinicDB
frames: masks 1.tif and 2.tif take that warning (a flat region of value 11 beside the
polyp), 20.tif does not."""

from __future__ import annotations

import logging
import shutil
import threading

import pytest
from _clinic_frames import MASK_RULE_WARNING
from _launcher import open_as_launcher
from _paths import DATASETS, dataset_subset

from napari_tmunet import _reader
from napari_tmunet._reader import file_warnings_shown, read_dataset

CLINIC = DATASETS / "CVC-ClinicDB"
needs_clinic = pytest.mark.skipif(
    not (CLINIC / "masks").is_dir(), reason=f"no CVC-ClinicDB at {DATASETS}"
)


def _warnings(notifications) -> list[str]:
    return [message for severity, message in notifications if "warning" in severity]


@needs_clinic
def test_open_folder_shows_each_masks_warning_once_naming_it(
    tmp_path, notifications, make_napari_viewer, caplog
):
    """A dataset folder of frames 1, 2 and 20 opened with the TM-UNet reader, as File >
    Open Folder does: one napari warning lists masks/1.tif's and masks/2.tif's warnings,
    once each, with their shares; 20.tif is not named. The log has each once, as before."""
    root = dataset_subset(CLINIC, tmp_path / "cvc3", ["1", "2", "20"])
    viewer = make_napari_viewer()
    with caplog.at_level("WARNING"):
        viewer.open(str(root), plugin="napari-tmunet")
    assert [layer.name for layer in viewer.layers] == [
        "1",
        "1 mask",
        "2",
        "2 mask",
        "20",
        "20 mask",
    ]
    (shown,) = [text for text in _warnings(notifications) if MASK_RULE_WARNING in text]
    lines = shown.splitlines()
    assert lines[0] == "napari-tmunet: 2 warnings about the files opened:"
    assert lines[1].startswith(f"  {root / 'masks' / '1.tif'}: {MASK_RULE_WARNING} 30% ")
    assert lines[2].startswith(f"  {root / 'masks' / '2.tif'}: {MASK_RULE_WARNING} 31% ")
    assert len(lines) == 3 and "20.tif" not in shown
    logged = [r.getMessage() for r in caplog.records if MASK_RULE_WARNING in r.getMessage()]
    assert logged == [line.strip() for line in lines[1:]]  # the terminal: once each


@needs_clinic
def test_the_launchers_picture_and_mask_show_the_masks_warning(
    tmp_path, notifications, make_napari_viewer
):
    """``napari-tmunet 2.png 2.tif`` (a picture and its mask given): the mask's warning is
    one napari warning, its text as the core says it, naming the file."""
    shutil.copy(CLINIC / "images" / "2.png", tmp_path / "2.png")
    shutil.copy(CLINIC / "masks" / "2.tif", tmp_path / "2_mask.tif")
    viewer = make_napari_viewer()
    words = [str(tmp_path / "2.png"), str(tmp_path / "2_mask.tif")]
    assert open_as_launcher(viewer, words) == [("2", "image"), ("2 mask", "labels")]
    (shown,) = [text for text in _warnings(notifications) if MASK_RULE_WARNING in text]
    assert shown.startswith(f"{tmp_path / '2_mask.tif'}: {MASK_RULE_WARNING} 31% of its non-zero")
    assert "\n" not in shown


@needs_clinic
def test_without_logging_set_up_the_terminal_still_gets_it_once(tmp_path, monkeypatch, capsys):
    """No log handler set (a plain ``napari`` start): Python prints a warning itself
    (``logging.lastResort``); with the reader's collector in place it still does, once."""
    root = dataset_subset(CLINIC, tmp_path / "cvc", ["1"])
    monkeypatch.setattr(logging.root, "handlers", [])
    shown = []
    monkeypatch.setattr(_reader, "_notify_warning", shown.append)
    read_dataset(str(root))
    (said,) = shown
    assert said.startswith(f"{root / 'masks' / '1.tif'}: {MASK_RULE_WARNING} 30% ")
    assert capsys.readouterr().err.splitlines() == [said]


def test_warnings_of_other_threads_are_not_the_files(monkeypatch):
    """A warning a dock's worker logs while a folder opens is not shown as the folder's;
    one logged by the reading itself is, once however often."""
    shown = []
    monkeypatch.setattr(_reader, "_notify_warning", shown.append)
    log = logging.getLogger("napari_tmunet.data.images")
    with file_warnings_shown():
        worker = threading.Thread(target=log.warning, args=("a worker's warning",))
        worker.start()
        worker.join()
        with file_warnings_shown():  # nested: the outer block shows it
            log.warning("%s: read twice", "x.tif")
        log.warning("%s: read twice", "x.tif")
    assert shown == ["x.tif: read twice"]
