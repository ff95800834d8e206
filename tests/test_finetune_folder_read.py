"""The Fine-tune dock reads a chosen dataset Folder in a worker thread, never on napari's
GUI thread (CVC-ClinicDB's 550 pairs held it a quarter of a second with a warm cache,
seconds from a cold one); a later choice wins over a read still running; Start waits for
the read. After a run, the Metrics dock names the two models short, as Segment does.
Real datasets (CVC-ClinicDB, MoNuSeg crops), the shipped models, the threaded path."""

from __future__ import annotations

import json
import re
import threading

import pytest
from _paths import DATASETS
from test_finetune_folder import MONUSEG, TILES, open_dock, shown, tile_folder

from napari_tmunet import active_model

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("one_torch_thread")]

CLINIC = DATASETS / "CVC-ClinicDB"
needs_clinic = pytest.mark.skipif(not CLINIC.is_dir(), reason=f"no CVC-ClinicDB at {CLINIC}")
needs_monuseg = pytest.mark.skipif(
    not all((MONUSEG / "images" / f"{t}.tif").is_file() for t in TILES),
    reason=f"no MoNuSeg at {MONUSEG}",
)
NUCLEI = "shipped model: TM-UNet nuclei (the Folder's images look like nuclei)"


class Listings:
    """The folders the dataset code lists, with the thread that lists each; a listing of
    a folder in ``held`` waits, off the GUI thread, until :meth:`release` (the read of a
    slow drive, made to end when the test says)."""

    def __init__(self, monkeypatch, held=()):
        from napari_tmunet.data import datasets

        self.calls: list[tuple] = []  # (folder, thread name)
        self.ended: list = []  # the folders whose listing has returned
        self.held = {str(folder) for folder in held}
        self._go = threading.Event()
        real = datasets._image_files

        def listed(folder):
            self.calls.append((folder, threading.current_thread().name))
            if str(folder.parent) in self.held and threading.current_thread() is not main:
                self._go.wait(timeout=120)
            files = real(folder)
            self.ended.append(folder)
            return files

        main = threading.main_thread()
        monkeypatch.setattr(datasets, "_image_files", listed)

    def release(self) -> None:
        self._go.set()

    def threads(self) -> set[str]:
        return {thread for _, thread in self.calls}


def start_one_step(tune, run_dir) -> None:
    """Set one step on the CPU in ``run_dir`` and click Start."""
    tune.steps.value = 1
    tune.batch_size.value = 1
    tune.learning_rate.value = 1e-5
    tune.device.value = "cpu"
    tune.run_folder.value = run_dir
    tune.start_button.native.click()


@needs_clinic
def test_choosing_cvc_clinicdb_reads_it_off_the_gui_thread(make_napari_viewer, qtbot, monkeypatch):
    """The 550 pairs of CVC-ClinicDB chosen as the Folder: the dock says "reading
    folder..." under it and the GUI thread goes on; a worker lists images/ and masks/
    once and reads the headers; then the note goes and the dock names the colonoscopy
    model the Folder's images are for."""
    listings = Listings(monkeypatch)
    tune = open_dock(make_napari_viewer(), "Fine-tune")
    tune.dataset_folder.value = CLINIC
    assert tune.reading_folder
    assert shown(tune.folder_note) and tune.folder_note.value == "reading folder..."
    assert tune.active_label.value == "the model for the Folder's images: reading folder..."
    qtbot.waitUntil(lambda: not tune.reading_folder, timeout=60_000)
    assert [folder for folder, _ in listings.calls] == [CLINIC / "images", CLINIC / "masks"]
    assert threading.main_thread().name not in listings.threads()
    assert not shown(tune.folder_note) and tune.folder_note.value == ""
    assert tune.active_label.value == (
        "shipped model: TM-UNet colonoscopy (the Folder's images look like colonoscopy)"
    )


@needs_clinic
@needs_monuseg
def test_a_later_folder_choice_wins_over_a_read_still_running(
    make_napari_viewer, qtbot, monkeypatch, tmp_path
):
    """CVC-ClinicDB chosen, then, while its read still runs (a slow drive: held until
    the test lets it go), a Folder of three MoNuSeg crops, one mask cut to another size:
    the crops' note and model are shown when their read ends, and stay when the older
    read of CVC-ClinicDB ends after it."""
    from napari_tmunet.data.images import read_mask, write_mask

    slides = tile_folder(tmp_path / "slides", ("a", "b", "c"))
    write_mask(slides / "masks" / "c.png", read_mask(slides / "masks" / "c.png")[0][:150])
    listings = Listings(monkeypatch, held=[CLINIC])
    tune = open_dock(make_napari_viewer(), "Fine-tune")
    tune.dataset_folder.value = CLINIC
    qtbot.waitUntil(lambda: len(listings.calls) == 1)  # CVC-ClinicDB's read is under way
    tune.dataset_folder.value = slides
    qtbot.waitUntil(lambda: not tune.reading_folder, timeout=60_000)
    note = tune.folder_note.value
    assert note.startswith(f"{slides}: 2 pairs, 1 problem\n") and "c.png is 150x192" in note
    assert tune.active_label.value == NUCLEI

    listings.release()  # CVC-ClinicDB's read ends now, after the crops'
    qtbot.waitUntil(lambda: CLINIC / "masks" in listings.ended, timeout=60_000)
    qtbot.wait(500)  # its result, were it taken, would be shown by now
    assert tune.folder_note.value == note and tune.active_label.value == NUCLEI
    assert not tune.reading_folder


@needs_monuseg
def test_start_waits_for_the_folders_read_and_starts_from_its_model(
    make_napari_viewer, qtbot, monkeypatch, tmp_path
):
    """A Folder of four MoNuSeg crops alone (no pair), its read held: Start does not start
    a run on a Folder still being read (no worker, no run folder, "reading folder..."),
    and Start cannot be clicked twice; once the read ends the run starts, from the
    nuclei model the Folder's H&E crops call for (not the first shipped model, which the
    dock would take without the Folder's modality)."""
    folder = tile_folder(tmp_path / "tiles", ("t1", "t2", "t3", "t4"))
    listings = Listings(monkeypatch, held=[folder])
    tune = open_dock(make_napari_viewer(), "Fine-tune")
    for row in list(tune.rows):
        tune.remove_pair(row)
    tune.dataset_folder.value = folder
    run_dir = tmp_path / "run"
    start_one_step(tune, run_dir)
    assert tune.worker is None and not run_dir.exists()
    assert tune.status.value == "reading folder..." and tune.running
    assert not tune.start_button.enabled and tune.stop_button.enabled
    qtbot.wait(300)
    assert tune.worker is None and not run_dir.exists()

    listings.release()
    qtbot.waitUntil(lambda: tune.worker is not None or not tune.running, timeout=60_000)
    assert tune.worker is not None  # the run's worker
    qtbot.waitUntil(lambda: not tune.running, timeout=300_000)
    assert tune.error == "" and tune.result["step"] == 1, tune.status.value
    plan = json.loads((run_dir / "finetune.json").read_text(encoding="utf-8"))
    assert (plan["start_model"], plan["modality"]) == ("TM-UNet nuclei", "nuclei")
    # listed when chosen, at Start (its files may have changed) and by the run: never
    # on the GUI thread
    assert [f for f, _ in listings.calls].count(folder / "images") == 3
    assert threading.main_thread().name not in listings.threads()


@needs_monuseg
def test_the_metrics_comparison_names_the_models_short(make_napari_viewer, qtbot, tmp_path):
    """A one-step run on a Folder of four MoNuSeg crops, by the dock's buttons: the
    Metrics dock's before/after table names the models as Segment's Model box does
    ("after: nuclei · tuned MM-DD HH:MM", not "after fine-tuning: fine-tuned on tiles
    2026-..." cut at the column's width), their full names, lineage and the checkpoint in
    the cells' tooltips; the CSV keeps the full names."""
    folder = tile_folder(tmp_path / "tiles", ("t1", "t2", "t3", "t4"))
    viewer = make_napari_viewer()
    tune = open_dock(viewer, "Fine-tune")
    for row in list(tune.rows):
        tune.remove_pair(row)
    tune.dataset_folder.value = folder
    start_one_step(tune, tmp_path / "run")  # once the Folder is read
    qtbot.waitUntil(lambda: tune.worker is not None or not tune.running, timeout=60_000)
    assert tune.worker is not None  # the threaded path
    qtbot.waitUntil(lambda: not tune.running, timeout=300_000)
    result = tune.result
    assert tune.error == "" and result["step"] == 1, tune.status.value
    name, best = result["name"], result["best_checkpoint"]
    assert name.startswith("fine-tuned on tiles ")

    metrics = open_dock(viewer, "Metrics")
    table = metrics.comparison_table.native
    cells = [table.item(row, 0) for row in range(table.rowCount())]
    tuned = active_model.short_name(active_model.file_choice(best))
    assert re.fullmatch(r"nuclei · tuned \d\d-\d\d \d\d:\d\d", tuned), tuned
    assert [cell.text() for cell in cells] == ["before", "after"]  # one line each
    names = f"before: TM-UNet nuclei; after: {tuned}"
    assert metrics.comparison_note.value.startswith(f"{names}\n"), metrics.comparison_note.value
    assert cells[0].toolTip() == "before fine-tuning: TM-UNet nuclei"
    assert cells[1].toolTip() == f"after fine-tuning: {name}, from TM-UNet nuclei\n{best}"
    assert [row["model"] for row in metrics.rows()[:2]] == [
        "before fine-tuning: TM-UNet nuclei",
        f"after fine-tuning: {name}",
    ]
    csv = metrics.export_csv(tmp_path / "scores.csv").read_text(encoding="utf-8")
    assert f"after fine-tuning: {name}" in csv and best in csv
