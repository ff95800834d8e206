"""Metrics dock fixes (helper 147): a reference mask is known by the file it came from
(``masks/20.tif`` opened beside the picture "20" is named "20 [1]" by napari) and pairs
with that picture's Segment output, not the newest one; a pair the dock cannot tell is
right says it is a guess; a mask alone (``napari-tmunet IMAGE MASK`` before Segment)
gets Compute's answer in the pair note's words; a script that ends without
``napari.run()`` exits cleanly (real CVC-ClinicDB frames, the shipped colonoscopy
model, Xvfb)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from _paths import DATASETS, REPO
from _view import open_dock

from napari_tmunet import metrics, registry

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("one_torch_thread")]

CLINIC = DATASETS / "CVC-ClinicDB"
needs_clinic = pytest.mark.skipif(
    not (CLINIC / "masks" / "20.tif").is_file(), reason="shared CVC-ClinicDB not present"
)


@pytest.fixture
def two_outputs(make_napari_viewer, qtbot):
    """A viewer with the CVC-ClinicDB frames 20 and 22 segmented in the Segment dock (its
    worker thread): layers "20", "20 labels", "22", "22 labels"."""
    assert registry.model_for_modality("colonoscopy") is not None  # shipped in the package
    viewer = make_napari_viewer()
    segment = open_dock(viewer, "Segment")
    for name in ("20", "22"):
        [image] = viewer.open(str(CLINIC / "images" / f"{name}.png"), plugin="napari")
        segment.image.value = image
        segment.segment_button.native.click()
        # the model's file is checked first ("checking X.pt..."), then it runs
        qtbot.waitUntil(lambda: not segment.status.value.startswith("checking "), timeout=60_000)
        assert segment.worker is not None  # the threaded path
        qtbot.waitUntil(lambda: not segment.running, timeout=180_000)
        assert segment.last_layer.name == f"{name} labels"
    return viewer


def compute(widget, qtbot) -> dict:
    """Click Compute (the dock's worker) and return the mean row."""
    widget.compute_button.native.click()
    assert widget._worker is not None  # the threaded path
    qtbot.waitUntil(lambda: widget._worker is None, timeout=60_000)
    return widget.results[-1]


def dice(prediction, reference_file) -> float:
    from napari_tmunet.data.images import read_mask

    reference = read_mask(reference_file)[0] > 0
    return metrics.dice_score(np.asarray(prediction.data) > 0, reference)


@needs_clinic
@pytest.mark.parametrize("reader", ["napari-tmunet", "napari"])
def test_a_mask_file_pairs_with_its_pictures_output_not_the_newest(two_outputs, qtbot, reader):
    """File > Open masks/20.tif after Segment of 20 and 22: napari names it "20 [1]" (an
    image "20" is open); its file says it is the mask of "20", so Metrics scores "20 labels"
    against it (Dice 0.85), not the newest output "22 labels" (Dice 0.4, no note)."""
    viewer = two_outputs
    [mask] = viewer.open(str(CLINIC / "masks" / "20.tif"), plugin=reader)
    assert mask.name == "20 [1]"
    widget = open_dock(viewer, "Metrics")

    assert widget.prediction.value is viewer.layers["20 labels"]
    assert widget.reference.value is mask
    assert widget.pair_note.value == ""
    row = compute(widget, qtbot)
    assert row["prediction"] == "20 labels" and row["reference"] == "20 [1]"
    expected = dice(viewer.layers["20 labels"], CLINIC / "masks" / "20.tif")
    assert row["dice"] == pytest.approx(expected) and row["dice"] > 0.8
    assert row["dice"] > dice(viewer.layers["22 labels"], CLINIC / "masks" / "20.tif") + 0.3

    # the other picture's output chosen: it stands alone, never paired with 20's mask
    viewer.layers.selection.active = viewer.layers["22 labels"]
    assert widget.reference.value is widget.prediction.value is viewer.layers["22 labels"]


@needs_clinic
@pytest.mark.parametrize("kind", ["image", "labels"])
def test_a_repeated_name_without_a_file_still_names_its_picture(two_outputs, qtbot, kind):
    """A mask added by a script as "20" beside the picture "20" (napari: "20 [1]", no
    file), as an image or as Labels: its name is the last clue, and it is the reference
    of "20 labels"."""
    from napari_tmunet.data.images import read_mask

    viewer = two_outputs
    add = viewer.add_image if kind == "image" else viewer.add_labels
    mask = add(read_mask(CLINIC / "masks" / "20.tif")[0], name="20")
    assert mask.name == "20 [1]"
    widget = open_dock(viewer, "Metrics")

    assert widget.prediction.value is viewer.layers["20 labels"]
    assert widget.reference.value is mask and widget.pair_note.value == ""
    assert compute(widget, qtbot)["dice"] > 0.8


@needs_clinic
def test_a_pair_the_dock_cannot_tell_says_it_is_a_guess(two_outputs, qtbot):
    """A reference of no known picture (no file, a name of no picture) among two outputs
    of its size: the dock pairs it by size, and the note says that is a guess."""
    from napari_tmunet._metrics_widget import PAIRED_BY_SIZE
    from napari_tmunet.data.images import read_mask

    viewer = two_outputs
    viewer.add_labels(read_mask(CLINIC / "masks" / "20.tif")[0], name="ground truth")
    widget = open_dock(viewer, "Metrics")

    prediction = widget.prediction.value
    assert prediction.name in ("20 labels", "22 labels")
    note = PAIRED_BY_SIZE.format(reference="'ground truth'", prediction=repr(prediction.name))
    assert widget.pair_note.value == note
    assert compute(widget, qtbot)["reference"] == "ground truth"


# ``napari-tmunet IMAGE MASK`` up to the event loop, which clicks Compute in the Metrics
# dock and prints its boxes, pair note and status, then closes napari.
LAUNCH_SCRIPT = """
import sys
import napari
from napari_tmunet import launch

def compute_and_close():
    viewer = napari.current_viewer()
    metrics = viewer.window.dock_widgets["Metrics (TM-UNet)"]
    print("BOXES", metrics.prediction.value.name, "|", metrics.reference.value.name, flush=True)
    print("NOTE", metrics.pair_note.value if metrics.pair_note.visible else "", flush=True)
    metrics.compute_button.native.click()
    print("STATUS", metrics.status.value, flush=True)
    viewer.close()

napari.run = compute_and_close
sys.exit(launch.main(sys.argv[1:]))
"""


def run_script(tmp_path, text: str, *args: str) -> subprocess.CompletedProcess:
    script = tmp_path / "script.py"
    script.write_text(text)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "HOME": str(tmp_path)}
    return subprocess.run(
        [sys.executable, str(script), *args], env=env, capture_output=True, text=True, timeout=300
    )


@needs_clinic
def test_the_launchers_mask_alone_says_what_is_missing_at_compute(tmp_path):
    """``napari-tmunet images/20.png masks/20.tif`` before any Segment: "20 mask" is the
    only mask (in both boxes, as a mask alone is elsewhere); the pair note and Compute
    both say to segment its picture, not "choose two different layers"."""
    from napari_tmunet._metrics_widget import CHOOSE_PREDICTION

    done = run_script(
        tmp_path, LAUNCH_SCRIPT, str(CLINIC / "images" / "20.png"), str(CLINIC / "masks" / "20.tif")
    )
    assert done.returncode == 0, done.stdout + done.stderr
    missing = CHOOSE_PREDICTION.format(name="'20 mask'")
    assert "BOXES 20 mask | 20 mask" in done.stdout, done.stdout
    assert f"NOTE {missing}" in done.stdout, done.stdout
    assert f"STATUS {missing}" in done.stdout, done.stdout
    assert "same layer" not in done.stdout


# A script that scores two CVC-ClinicDB masks in the Metrics dock (its worker) and ends
# without napari.run(), as a script for a figure does.
NO_RUN_SCRIPT = """
import sys, time
import napari
from qtpy.QtWidgets import QApplication
from napari_tmunet.data.images import read_mask

viewer = napari.Viewer(show=False)
_, metrics = viewer.window.add_plugin_dock_widget("napari-tmunet", "Metrics")
mask = read_mask(sys.argv[1])[0]
viewer.add_labels(mask, name="20 mask")
viewer.add_labels(mask[::-1].copy(), name="flipped")
metrics.compute_button.native.click()
deadline = time.monotonic() + 60
while not metrics.results and time.monotonic() < deadline:
    QApplication.processEvents()
    time.sleep(0.01)
print("SCORED", metrics.status.value, flush=True)
"""


@needs_clinic
def test_a_script_without_napari_run_exits_cleanly(tmp_path):
    """Metrics' stale-check timer has no parent: Python's exit may delete it before the
    dock's close callback stops it, which raised "QTimer has been deleted" inside Qt and
    aborted the process (exit 134)."""
    done = run_script(tmp_path, NO_RUN_SCRIPT, str(CLINIC / "masks" / "20.tif"))
    assert "SCORED flipped vs 20 mask: Dice" in done.stdout, done.stdout + done.stderr
    assert done.returncode == 0, done.stderr
    assert "has been deleted" not in done.stderr and "Traceback" not in done.stderr, done.stderr
