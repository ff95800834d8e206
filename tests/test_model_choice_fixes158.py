"""Which model runs, and what a fine-tuned model is for (fix-158; real UDIAT and
CVC-ClinicDB images, CPU):

- Segment (and Segment all) and ``napari-tmunet-predict`` pick the model for an image by
  one rule (``active_model.model_for_image``): an active model whose settings hold no
  modality runs on the kind its checkpoint records, in both;
- a Fine-tune run resumed after its starting model's file went away is not made active
  unseen: the user decides, and the status names the missing file;
- a fine-tuned checkpoint saved before 2026-12-05 with an empty modality is read as its
  lineage says (the file left as it is), and ``napari-tmunet-train fit --modality``
  records the kind (default: the start checkpoint's);
- ``plural`` has one home without Qt.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import threading

import numpy as np
import pytest
from _checkpoints import tiny_checkpoint
from _paths import DATASETS, POLYP, SCAN, dataset_subset

from napari_tmunet import active_model, registry, settings
from napari_tmunet.checkpoint_header import read_header

UDIAT = DATASETS / "UDIAT"
STEMS = ["000001", "000002", "000003", "000004", "000005", "000006"]
LABEL = "fine-tuned on scans 2026-12-05 09:10:11"
needs_datasets = pytest.mark.skipif(
    not (SCAN.is_file() and POLYP.is_file() and (UDIAT / "images").is_dir()),
    reason="shared datasets not present",
)
pytestmark = [needs_datasets, pytest.mark.usefixtures("one_torch_thread")]


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def predicted_models(err: str) -> dict[str, str]:
    """Image name -> the model napari-tmunet-predict's lines say it ran on it."""
    found = re.findall(r"model '([^']+)'.*?for images like (\S+):", err)
    return {image: model for model, image in found}


@pytest.mark.gui
def test_segment_and_predict_pick_the_same_model_for_each_image(
    make_napari_viewer, images, tmp_path, capsys
):
    """The settings hold an active fine-tuned model without a modality (saved by an older
    version, or a script); its checkpoint records ultrasound. The dock (the chosen image
    and Segment all's pick for the other) and predict both run it on the scan and the
    shipped colonoscopy model on the frame. On main the dock ran it on both."""
    from napari_tmunet.data.images import read_image
    from napari_tmunet.predict_cli import main

    best = tiny_checkpoint(
        tmp_path / "runs" / "ft" / "train" / "best.pt", metadata={"modality": "ultrasound"}
    )
    settings.save_active_models({"current": {"model": str(best), "label": LABEL}})

    viewer = make_napari_viewer()
    _, segment = viewer.window.add_plugin_dock_widget("napari-tmunet", "Segment")
    segment = getattr(segment, "__wrapped__", segment)
    scan = viewer.add_image(np.asarray(read_image(SCAN)), name=SCAN.stem)
    frame = viewer.add_image(np.asarray(read_image(POLYP)), name=POLYP.stem, rgb=True)
    names = {str(best): LABEL}
    expected = {"000002.png": LABEL, "1.png": "TM-UNet colonoscopy"}
    for chosen, other in ((scan, frame), (frame, scan)):
        segment.image.value = chosen
        shown = segment._shown_model()  # Segment's, on the chosen image
        other_model = segment._model_to_run(other)  # Segment all's, on the other one
        dock = {chosen.name: names.get(shown, shown), other.name: names.get(other_model)}
        dock[other.name] = dock[other.name] or other_model
        assert {f"{name}.png": model for name, model in dock.items()} == expected
    assert segment.model_reason.value.startswith("Runs TM-UNet colonoscopy:")

    code = main([str(images), str(tmp_path / "out"), "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert predicted_models(err) == expected, err
    assert "the model you made active in napari for ultrasound images" in err, err


def stopped_run(tmp_path):
    """A Fine-tune run of a tiny start checkpoint on 6 UDIAT pairs, stopped after its
    first step (resumable); (run folder, start checkpoint)."""
    from napari_tmunet.training.finetune import FinetuneJob, run_finetune

    start = tiny_checkpoint(tmp_path / "start" / "best.pt", size=32, metadata={})
    folder = dataset_subset(UDIAT, tmp_path / "busi", STEMS)
    run_dir = tmp_path / "run"
    stop = threading.Event()
    job = FinetuneJob(
        run_dir=run_dir, dataset_folder=str(folder), start_model=str(start), steps=6,
        batch_size=2, device="cpu",
    )  # fmt: skip
    result = run_finetune(job, stop, {"on_step": lambda step, total, loss: stop.set()})
    assert result["stopped"] and result["step"] < 6, result
    return run_dir, start


@pytest.mark.gui
def test_a_resumed_run_whose_start_file_is_gone_leaves_the_choice_to_the_user(
    make_napari_viewer, qtbot, tmp_path
):
    """Threaded path: Resume in the dock after the start checkpoint was deleted. Only the
    fine-tuned model is scored: nothing is made active, the status names the missing
    file, 'Use the fine-tuned model anyway' is offered, and every file of the run folder
    is still there. Used anyway, the missing start is not kept for Revert. On main the
    model was made active without any comparison."""
    from napari_tmunet import _docks
    from napari_tmunet.training.finetune import compare_models

    run_dir, start = stopped_run(tmp_path)
    start.unlink()
    before = {p.relative_to(run_dir) for p in run_dir.rglob("*")}
    viewer = make_napari_viewer()
    tune = _docks.open_dock(viewer, "Fine-tune")[1]
    tune.device.value = "cpu"
    tune.run_folder.value = str(run_dir)
    assert tune.resume_button.enabled
    tune.resume_button.native.click()
    assert tune.worker is not None  # the threaded path
    qtbot.waitUntil(lambda: not tune.running, timeout=300_000)

    assert tune.error == "" and tune.result["old"] is None and tune.result["new"] is not None
    assert compare_models(tune.result)["use_new"] is None
    assert tune.active.current is None  # nothing made active unseen
    assert not tune.use_anyway_button.native.isHidden()
    assert f"its file {start} is not found" in tune.details.value, tune.details.value
    assert "you choose" in tune.details.value  # the full reason under the button
    assert "(the starting model could not be scored)" in tune.status.value  # the headline
    after = {p.relative_to(run_dir) for p in run_dir.rglob("*")}
    assert before <= after, before - after

    tune.use_anyway_button.native.click()
    assert tune.active.current.model == tune.result["best_checkpoint"]
    assert tune.active.previous is None  # not the start file that is gone


def old_fine_tune(folder, start: str) -> object:
    """A Fine-tune run made before 2026-12-05: finetune.json and best.pt record no
    modality; it started from ``start``. Its best.pt."""
    folder.mkdir(parents=True)
    plan = {"name": f"fine-tuned on slide {folder.name}", "start_model": start}
    (folder / "finetune.json").write_text(json.dumps(plan), encoding="utf-8")
    return tiny_checkpoint(folder / "train" / "best.pt", metadata={})


def test_an_old_fine_tune_of_no_modality_is_read_as_its_lineage_says(tmp_path):
    """A fine-tune of the shipped nuclei model saved with an empty modality, and a
    fine-tune of that one: both are nuclei models when read (modality, instance output
    when loaded or read from the header) and when made active, now or in a next
    session; their files are not rewritten. On main they were of no kind."""
    from napari_tmunet._segment_jobs import header_defaults

    first = old_fine_tune(tmp_path / "runs" / "a", "TM-UNet nuclei")
    second = old_fine_tune(tmp_path / "runs" / "b", str(first))
    sums = {path: sha(path) for path in (first, second)}
    for best in (first, second):
        assert read_header(best)["metadata"].get("modality") is None  # the file says nothing
        assert registry.model_modality(best) == "nuclei"
        assert registry.load_model(best, "cpu").metadata["modality"] == "nuclei"
        assert header_defaults(str(best))["instances"] is True
        assert active_model.ActiveModel().set(str(best), "tuned").modality == "nuclei"
    settings.save_active_models({"current": {"model": str(second), "label": "tuned"}})
    assert active_model.saved_active()[0].modality == "nuclei"  # a next session
    assert {path: sha(path) for path in sums} == sums


def test_fit_records_the_modality_given_else_the_start_checkpoints(tmp_path, monkeypatch):
    """`napari-tmunet-train fit --modality` is recorded in the checkpoints; without it, a
    fit from an old fine-tune that records none records its lineage's."""
    from trainer.cli import build_parser
    from trainer.cli import main as train_cli

    start = old_fine_tune(tmp_path / "runs" / "a", "TM-UNet nuclei")
    data = dataset_subset(UDIAT, tmp_path / "busi", STEMS)
    tiny = ["fit", "--data", str(data), "--init-checkpoint", str(start), "--variant", "t",
            "--size", "64", "--batch-size", "2", "--steps", "2", "--epochs", "1",
            "--device", "cpu", "--num-workers", "0", "--no-efficiency", "--no-progress",
            "--no-test"]  # fmt: skip
    monkeypatch.chdir(tmp_path)
    assert train_cli([*tiny, "--run-dir", "given", "--modality", "ultrasound"]) == 0
    assert train_cli([*tiny, "--run-dir", "default"]) == 0
    for run, modality in (("given", "ultrasound"), ("default", "nuclei")):
        for name in ("best.pt", "last.pt"):
            assert read_header(tmp_path / run / name)["metadata"]["modality"] == modality
    fit = build_parser()._subparsers._group_actions[0].choices["fit"]
    (option,) = [a for a in fit._actions if "--modality" in a.option_strings]
    assert tuple(option.choices) == registry.MODALITIES


def test_plural_has_one_home_without_qt():
    """predict and the docks say counts with one function, in a module without Qt."""
    code = (
        "import sys; import napari_tmunet.predict_cli as p, napari_tmunet.words as w; "
        "assert p.plural is w.plural and not hasattr(p, '_count'); "
        "assert not [m for m in sys.modules if m.split('.')[0] in ('qtpy', 'PyQt5', 'PyQt6')]"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    from napari_tmunet import _widget_common, words

    assert "plural" not in vars(_widget_common)
    assert words.plural(1, "image") == "1 image" and words.plural(2, "image") == "2 images"
