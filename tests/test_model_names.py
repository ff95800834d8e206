"""Fine-tuned models' names in a 1366 x 768 window (tester27 D5): the Segment dock's Model
box shows two fine-tunings of one slide and one minute apart by their short names (base
model, day and time), with the full name and lineage in their tooltips, and the layers they
make are named with that short name, their full provenance in the layer's metadata (CPU,
Xvfb, the bundled MoNuSeg nuclei crop, two one-step fine-tunings from the docks)."""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import pytest

from napari_tmunet import active_model
from napari_tmunet._sample_data import load_sample
from napari_tmunet._widget_common import shown_text

PLUGIN = "napari-tmunet"
SHIPPED = "TM-UNet nuclei"
SLIDE = "TCGA-A7-A13F-01Z-00-DX1"  # the MoNuSeg slide the bundled nuclei crop comes from
# the two runs' clock: one slide, one minute, 43 s apart
STARTS = (datetime(2026, 12, 4, 16, 30, 2), datetime(2026, 12, 4, 16, 30, 45))


def open_dock(viewer, name):
    _, widget = viewer.window.add_plugin_dock_widget(plugin_name=PLUGIN, widget_name=name)
    return getattr(widget, "__wrapped__", widget)


def segment(qtbot, seg):
    """Segment the chosen image from the dock's button (the threaded path)."""
    seg.segment_button.native.click()
    # the fine-tuned model's file, shown a moment ago, is read first ("checking X.pt...")
    qtbot.waitUntil(lambda: not seg.status.value.startswith("checking "), timeout=60_000)
    assert seg.worker is not None
    qtbot.waitUntil(lambda: not seg.running, timeout=300_000)
    assert seg.status.value == "done", seg.status.value
    return seg.last_layer


def fine_tune(qtbot, tune, run_dir) -> str:
    """One CPU step from the Fine-tune dock's Start (the threaded path); the fine-tuned
    model made active (by the verdict or 'Use the fine-tuned model anyway'); its path."""
    tune.steps.value, tune.batch_size.value, tune.device.value = 1, 1, "cpu"
    tune.run_folder.value = run_dir
    tune.start_button.native.click()
    assert tune.worker is not None
    qtbot.waitUntil(lambda: not tune.running, timeout=300_000)
    assert tune.error == "" and tune.result["trained"] == 1, tune.status.value
    if not tune.use_anyway_button.native.isHidden():
        tune.use_anyway_button.native.click()
    assert tune.active.current.model == tune.result["best_checkpoint"]
    return tune.result["best_checkpoint"]


def box_texts(combo) -> dict[str, tuple[str, str, str]]:
    """Model box item data -> (its text, the text shown when it is chosen, its tooltip)."""
    from qtpy.QtCore import Qt

    seen = {}
    for index in range(combo.count()):
        combo.setCurrentIndex(index)
        tip = combo.itemData(index, Qt.ItemDataRole.ToolTipRole)
        seen[combo.itemData(index)] = (combo.itemText(index), shown_text(combo), tip or "")
    return seen


@pytest.mark.gui
@pytest.mark.usefixtures("one_torch_thread")
def test_two_fine_tunings_of_one_minute_are_told_apart_in_the_box_and_the_layers(
    make_napari_viewer, qtbot, monkeypatch, tmp_path
):
    stamps = iter(STARTS)
    real_name = active_model.run_name
    monkeypatch.setattr(active_model, "run_name", lambda on, when=None: real_name(on, next(stamps)))
    viewer = make_napari_viewer()
    viewer.window._qt_window.resize(1366, 768)
    viewer.window._qt_window.show()
    seg, tune = open_dock(viewer, "Segment"), open_dock(viewer, "Fine-tune")
    image, mask = load_sample("nuclei")
    slide = viewer.add_image(np.ascontiguousarray(image[:128, :128]), name=SLIDE, rgb=True)
    corrected = viewer.add_labels(np.ascontiguousarray(mask[:128, :128]), name=f"{SLIDE} mask")
    seg.image.value, seg.device.value = slide, "cpu"
    assert seg.model.value == SHIPPED
    first_layer = segment(qtbot, seg)

    made = {}  # checkpoint -> the layer Segment made with it
    for k in range(2):
        tune.rows[0].image.value, tune.rows[0].mask.value = slide, corrected
        best = fine_tune(qtbot, tune, tmp_path / f"run{k}")
        assert seg.model.value == best  # the Segment dock runs it
        made[best] = segment(qtbot, seg)
    first, second = made
    qtbot.wait(100)

    # the Model box: each fine-tuned model by base, day and time (to the second for the
    # second one: the same minute), whole or elided in the middle, never at the time
    box = box_texts(seg.model.native)
    texts = {best: box[best][0] for best in made}
    assert texts == {
        first: "nuclei · tuned 12-04 16:30",
        second: "nuclei · tuned 12-04 16:30:45",
    }
    for best, end in ((first, "12-04 16:30"), (second, "16:30:45")):
        shown = box[best][1]
        assert shown.startswith("nuclei") and shown.endswith(end), shown
    assert box[first][1] != box[second][1]
    # the full names and lineage in the tooltips
    labels = {best: active_model.model_label(best) for best in made}
    assert labels == {
        first: f"fine-tuned on {SLIDE} 2026-12-04 16:30:02",
        second: f"fine-tuned on {SLIDE} 2026-12-04 16:30:45",
    }
    assert box[first][2] == f"{labels[first]}, from {SHIPPED}\n{first}"
    assert box[second][2] == f"{labels[second]}, from {labels[first]}, from {SHIPPED}\n{second}"
    assert seg.model.value == second and box[second][2] in seg.model.tooltip

    # the layers: "<slide> labels (<the box's text>)", short and apart, even at their ends
    # (napari's layer list elides them in the middle)
    assert first_layer.name == f"{SLIDE} labels"
    for best, layer in made.items():
        assert layer.name == f"{SLIDE} labels ({texts[best]})"
        assert "2026" not in layer.name and len(layer.name) <= len(SLIDE) + 45
        assert layer.metadata["model"] == best and layer.metadata["model_label"] == labels[best]
        assert layer.metadata["model_name"] == texts[best]
        assert layer.metadata["model_provenance"] == box[best][2]
    names = [layer.name for layer in (first_layer, *made.values())]
    assert len({name[-12:] for name in names}) == 3, names
    assert first_layer.metadata["model_name"] == SHIPPED


def test_short_names_and_lineage_come_from_the_runs_records(tmp_path):
    """A run's checkpoint chosen by file is named from its finetune.json and those of the
    runs it started from (a plan that names itself as its start ends the walk)."""
    shipped, best = SHIPPED, {}
    for run, start, second in (("a", shipped, "02"), ("b", None, "45")):
        train = tmp_path / run / "train"
        train.mkdir(parents=True)
        best[run] = str(train / "best.pt")
        (train / "best.pt").write_bytes(b"")
        plan = {
            "name": f"fine-tuned on {SLIDE} 2026-12-04 16:30:{second}",
            "start_model": start or best["a"],
            "modality": "nuclei",
        }
        (tmp_path / run / "finetune.json").write_text(json.dumps(plan))
    choice = active_model.file_choice(best["b"])
    assert choice.lineage == (best["a"], shipped) and choice.modality == "nuclei"
    assert active_model.short_name(choice) == "nuclei · tuned 12-04 16:30"
    assert active_model.short_name(choice, seconds=True) == "nuclei · tuned 12-04 16:30:45"
    assert active_model.provenance(choice) == (
        f"fine-tuned on {SLIDE} 2026-12-04 16:30:45, from fine-tuned on {SLIDE} "
        f"2026-12-04 16:30:02, from {shipped}\n{best['b']}"
    )
    # an older run's name (no image, no seconds): the modality stands for the base
    older = active_model.ModelChoice("x.pt", "fine-tuned on 2026-12-02 02:41", "colonoscopy")
    assert active_model.short_name(older) == "colonoscopy · tuned 12-02 02:41"
    for label in (shipped, "mine.pt", "fine-tuned: 20261204-162957"):  # not a run's name
        assert active_model.short_name(active_model.ModelChoice("m", label)) == label
    loop = json.loads((tmp_path / "a" / "finetune.json").read_text())
    (tmp_path / "a" / "finetune.json").write_text(json.dumps({**loop, "start_model": best["a"]}))
    assert active_model.run_lineage(best["a"]) == ()
