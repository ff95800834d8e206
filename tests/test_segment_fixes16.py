"""The Segment dock (tester16 #5, #8, #10; tester17 N1, N2), on the threaded path in a real
viewer: a threshold moved during a run holds for that run's model when the Model box or
the Image box is switched before the run ends; a failure status goes when another image is
chosen; the summary follows the model chosen for the image, and has no line for a result
whose layer was closed."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from test_segment_choices import open_sample_named, segment, segment_dock
from test_segment_edits import close_dock
from test_segment_widget import open_sample, wait_done

from napari_tmunet import _segment_widget, registry
from napari_tmunet._segment_jobs import header_defaults
from napari_tmunet.postprocess import LabelOptions, derive_labels

pytestmark = pytest.mark.gui

NUCLEI, COLON, ULTRASOUND = "TM-UNet nuclei", "TM-UNet colonoscopy", "TM-UNet ultrasound"


@pytest.fixture(autouse=True)
def _shipped_models():
    if any(registry.find_model(name) is None for name in (NUCLEI, COLON, ULTRASOUND)):
        pytest.skip("the three shipped models are needed")


@pytest.fixture
def held_run(monkeypatch):
    """A gate the dock's runs wait at (in their worker) until the test sets it."""
    gate, real_jobs = threading.Event(), _segment_widget.segment_jobs

    def held_jobs(jobs):
        assert gate.wait(60)
        yield from real_jobs(jobs)

    monkeypatch.setattr(_segment_widget, "segment_jobs", held_jobs)
    return gate


def move_threshold_during_a_nuclei_run(widget, image, qtbot) -> None:
    """Segment ``image`` with the nuclei model (held) and move Threshold to 0.73 meanwhile."""
    widget.image.value = image
    assert widget.model.value == NUCLEI and widget.threshold.value == pytest.approx(0.5)
    widget.segment()
    assert widget.running and widget.worker is not None  # the threaded path, held
    widget.threshold.value = 0.73
    qtbot.wait(300)  # past the debounce: the move waits for the run


@pytest.mark.usefixtures("notices")
def test_a_threshold_moved_during_a_run_holds_when_the_model_box_is_switched(
    make_napari_viewer, qtbot, held_run
):
    """Threshold moved to 0.73 while the nuclei model runs, then the Model box switched to
    the colonoscopy model before the run ends: the nuclei result arrives at 0.73 (not at
    the model's 0.50), the sliders show the colonoscopy model's own values meanwhile, and
    picking the nuclei model again shows 0.73 (tester16 #5)."""
    viewer = make_napari_viewer()
    widget = segment_dock(viewer)
    image = open_sample(viewer, "nuclei")
    move_threshold_during_a_nuclei_run(widget, image, qtbot)
    widget.model.value = COLON
    colon_own = header_defaults(COLON)
    assert widget.threshold.value == pytest.approx(colon_own["threshold"])
    held_run.set()
    wait_done(qtbot, widget)
    qtbot.waitUntil(lambda: not widget.deriving, timeout=30_000)

    labels = viewer.layers[f"{image.name} labels"]
    options = labels.metadata["label_options"]
    assert options["threshold"] == pytest.approx(0.73)
    expected = derive_labels(labels.metadata["tmunet_probability"], LabelOptions(**options))
    np.testing.assert_array_equal(np.asarray(labels.data) > 0, expected > 0)
    assert "model not run again" in widget.status.value and NUCLEI in widget.status.value
    assert widget.model.value == COLON  # its values, not the nuclei run's
    assert widget.threshold.value == pytest.approx(colon_own["threshold"])
    assert widget.min_confidence.value == pytest.approx(colon_own["min_confidence"])
    widget.model.value = NUCLEI
    assert widget.threshold.value == pytest.approx(0.73)
    assert "threshold 0.73" in widget.summary.value and NUCLEI in widget.summary.value


def test_a_failure_status_goes_when_another_image_is_chosen(make_napari_viewer, qtbot):
    """Segment fails on a 1-pixel picture (read as one grey frame): the status says so in
    the singular; choosing another image clears it, as after a success (tester16 #8)."""
    viewer = make_napari_viewer()
    widget = segment_dock(viewer)
    colon = open_sample(viewer, "colonoscopy")
    tiny = viewer.add_image(np.full((1, 1, 3), 128, np.uint8), name="onepx", rgb=False)
    widget.image.value = tiny
    widget.segment()
    assert widget.worker is not None  # the threaded path
    wait_done(qtbot, widget)
    status = widget.status.value
    assert status.startswith("onepx failed: image of shape (1, 1, 3) was read as 1 grey frame ")
    assert "frames" not in status.split(" pixels")[0]
    widget.model.value = ULTRASOUND  # the same image: its failure still holds
    assert widget.status.value == status
    widget.image.value = colon
    assert widget.status.value == "" and widget.summary.value == ""


@pytest.mark.usefixtures("notices")
def test_the_summary_is_that_of_the_model_chosen_for_the_image(make_napari_viewer, qtbot):
    """Colonoscopy frame segmented with its model, then with the ultrasound model to
    compare (a layer of its own): picking either model shows that model's result in the
    summary, a model with none shows none, and a threshold moved updates the line of the
    model shown (tester16 #10)."""
    viewer = make_napari_viewer()
    widget = segment_dock(viewer)
    image = open_sample(viewer, "colonoscopy")
    widget.image.value = image
    assert widget.model.value == COLON
    segment(qtbot, widget)
    colon_line = widget.summary.value
    assert colon_line.startswith(f"{image.name}: ") and f"with {COLON} " in colon_line
    widget.model.value = NUCLEI  # no result of it for this image
    assert widget.summary.value == ""
    widget.model.value = ULTRASOUND
    assert widget.summary.value == ""
    segment(qtbot, widget)
    us_line = widget.summary.value
    assert f"with {ULTRASOUND} " in us_line and "may not suit this image" in us_line
    ours = [layer.name for layer in viewer.layers if layer.name.startswith(f"{image.name} labels")]
    assert ours == [f"{image.name} labels", f"{image.name} labels ({ULTRASOUND})"]
    widget.model.value = COLON
    assert widget.summary.value == colon_line
    assert widget.threshold.value == pytest.approx(0.5)
    widget.threshold.value = 0.8
    qtbot.waitUntil(lambda: "threshold 0.80" in widget.summary.value, timeout=30_000)
    assert f"with {COLON} " in widget.summary.value
    assert "may not suit" not in widget.summary.value
    widget.model.value = ULTRASOUND
    assert widget.summary.value == us_line
    widget.model.value = COLON
    assert "threshold 0.80" in widget.summary.value


@pytest.mark.usefixtures("notices")
def test_a_reopened_docks_result_comes_back_after_a_comparison(make_napari_viewer, qtbot):
    """The colonoscopy result made before the dock was reopened is the summary again when
    the colonoscopy model is picked after comparing the ultrasound model (tester16 #10)."""
    viewer = make_napari_viewer()
    widget = segment_dock(viewer)
    image = open_sample(viewer, "colonoscopy")
    widget.image.value = image
    segment(qtbot, widget)
    close_dock(viewer, widget)
    reopened = segment_dock(viewer)
    line = reopened.summary.value
    assert f"with {COLON} " in line and "before this dock was opened" in line
    reopened.model.value = ULTRASOUND
    segment(qtbot, reopened)
    assert f"with {ULTRASOUND} " in reopened.summary.value
    reopened.model.value = COLON
    assert (
        reopened.summary.value.split("; segmented before")[0] == line.split("; segmented before")[0]
    )


def assert_derived_at(labels, threshold: float) -> None:
    """``labels`` (an output layer) were derived from its kept probability at ``threshold``."""
    options = labels.metadata["label_options"]
    assert options["threshold"] == pytest.approx(threshold)
    expected = derive_labels(labels.metadata["tmunet_probability"], LabelOptions(**options))
    np.testing.assert_array_equal(np.asarray(labels.data) > 0, expected > 0)


@pytest.mark.usefixtures("notices")
def test_a_threshold_moved_during_a_run_holds_when_the_image_box_is_switched(
    make_napari_viewer, qtbot, held_run
):
    """Threshold moved to 0.73 while the nuclei model runs on its image, then another image
    chosen in the Image box before the run ends: the nuclei result arrives at 0.73, and
    choosing its image again shows 0.73 (tester17 N1)."""
    viewer = make_napari_viewer()
    widget = segment_dock(viewer)
    image = open_sample(viewer, "nuclei")
    other = open_sample_named(viewer, "colonoscopy")
    move_threshold_during_a_nuclei_run(widget, image, qtbot)
    widget.image.value = other
    assert widget.model.value == COLON
    held_run.set()
    wait_done(qtbot, widget)
    qtbot.waitUntil(lambda: not widget.deriving, timeout=30_000)

    assert_derived_at(viewer.layers[f"{image.name} labels"], 0.73)
    assert widget.threshold.value == pytest.approx(header_defaults(COLON)["threshold"])
    widget.image.value = image
    assert widget.threshold.value == pytest.approx(0.73)
    assert "threshold 0.73" in widget.summary.value and NUCLEI in widget.summary.value


@pytest.mark.usefixtures("notices")
def test_segment_all_derives_each_result_with_the_values_moved_for_its_model(
    make_napari_viewer, qtbot, held_run
):
    """Segment all on a nuclei and a colonoscopy image: the threshold moved to 0.73 on the
    nuclei image and to 0.8 on the colonoscopy image while it runs gives each result its
    model's value, whichever image is chosen when the run ends (tester17 N1)."""
    viewer = make_napari_viewer()
    widget = segment_dock(viewer)
    nuclei = open_sample(viewer, "nuclei")
    colon = open_sample_named(viewer, "colonoscopy")
    widget.image.value = nuclei
    widget.segment_all()
    assert widget.running and widget.worker is not None  # the threaded path, held
    widget.threshold.value = 0.73
    qtbot.wait(300)
    widget.image.value = colon
    widget.threshold.value = 0.8
    qtbot.wait(300)
    held_run.set()
    wait_done(qtbot, widget)
    qtbot.waitUntil(lambda: not widget.deriving, timeout=30_000)

    assert_derived_at(viewer.layers[f"{nuclei.name} labels"], 0.73)
    assert_derived_at(viewer.layers[f"{colon.name} labels"], 0.8)
    widget.image.value = nuclei
    assert widget.threshold.value == pytest.approx(0.73)


@pytest.mark.usefixtures("notices")
def test_no_summary_line_for_a_result_whose_layer_was_closed(make_napari_viewer, qtbot):
    """Colonoscopy frame segmented with its model and with the ultrasound model; after
    either model's Labels layer is closed, picking that model shows no summary line for
    it (tester17 N2)."""
    viewer = make_napari_viewer()
    widget = segment_dock(viewer)
    image = open_sample(viewer, "colonoscopy")
    widget.image.value = image
    segment(qtbot, widget)
    colon_line = widget.summary.value
    widget.model.value = ULTRASOUND
    segment(qtbot, widget)
    viewer.layers.remove(viewer.layers[f"{image.name} labels ({ULTRASOUND})"])
    widget.model.value = COLON
    assert widget.summary.value == colon_line
    widget.model.value = ULTRASOUND
    assert widget.summary.value == ""
    viewer.layers.remove(viewer.layers[f"{image.name} labels"])
    widget.model.value = COLON
    assert widget.summary.value == ""
    widget.threshold.value = 0.8
    qtbot.waitUntil(lambda: "was removed" in widget.status.value, timeout=10_000)
    assert widget.summary.value == ""
