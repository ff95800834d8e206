"""An active model that records no kind of image (a fine-tune of a `fit` checkpoint saved
before fine-tunes recorded the kind they trained on; tester 34, F1): Segment and
``napari-tmunet-predict`` both run it on every kind of image and say so, instead of
claiming it is "for colonoscopy images" (Segment on a colonoscopy frame) or "for
ultrasound images" (predict, from the settings' empty modality). Real UDIAT and
CVC-ClinicDB images, CPU."""

from __future__ import annotations

import numpy as np
import pytest
from _checkpoints import tiny_checkpoint
from _paths import POLYP, SCAN

from napari_tmunet import active_model, settings
from napari_tmunet._segment_widget import EVERY_KIND
from napari_tmunet.data.images import read_image
from napari_tmunet.predict_cli import main

LABEL = "fine-tuned on small sbs 2026-12-05 05:20:13"
pytestmark = [
    pytest.mark.skipif(
        not (SCAN.is_file() and POLYP.is_file()), reason="shared datasets not present"
    ),
    pytest.mark.usefixtures("one_torch_thread"),
]


def no_kind_model(tmp_path):
    """A Fine-tune run's checkpoint whose metadata records no modality (tiny, 64 x 64)."""
    return tiny_checkpoint(tmp_path / "runs" / "ft" / "train" / "best.pt", metadata={})


def test_predict_says_an_active_model_of_no_kind_runs_on_every_kind(images, tmp_path, capsys):
    best = no_kind_model(tmp_path)
    settings.save_active_models({"current": {"model": str(best), "label": LABEL}})
    code = main([str(images), str(tmp_path / "out"), "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "for colonoscopy images" not in err and "for ultrasound images" not in err, err
    assert err.count("records no kind of image, so it runs on every kind") == 1, err
    # both images with it (one model named), as the line says
    assert "TM-UNet ultrasound" not in err and err.count(f"model {LABEL!r}") == 1, err


@pytest.mark.gui
def test_segment_says_an_active_model_of_no_kind_runs_on_every_kind(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    _, segment = viewer.window.add_plugin_dock_widget("napari-tmunet", "Segment")
    segment = getattr(segment, "__wrapped__", segment)
    best = no_kind_model(tmp_path)
    frame = viewer.add_image(np.asarray(read_image(POLYP)), name="1", rgb=True)
    segment.image.value = frame
    active_model.for_viewer(viewer).set(str(best), LABEL, "")
    assert segment.model.value == str(best)
    assert segment.model_reason.value == f"Runs {LABEL}: {EVERY_KIND}."
    scan = viewer.add_image(np.asarray(read_image(SCAN)), name="000002")
    segment.image.value = scan  # another kind: the same model, as predict runs it
    assert segment.model.value == str(best)
    assert segment.model_reason.value == f"Runs {LABEL}: {EVERY_KIND}."
    # a model of a known kind made active after it: the other kinds go back to theirs
    active_model.for_viewer(viewer).set("TM-UNet colonoscopy", "TM-UNet colonoscopy", "colonoscopy")
    assert segment.model.value == "TM-UNet ultrasound"
