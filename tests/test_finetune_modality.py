"""A model fine-tuned from a checkpoint that records no modality (one made by
``napari-tmunet-train fit``) is for the kind of images it was fine-tuned on (tester 34,
F1): its checkpoint, finetune.json and the run's result say so, so that Segment,
``napari-tmunet-predict`` and the settings agree; real UDIAT images, tiny CPU runs."""

from __future__ import annotations

import threading

import pytest
from _checkpoints import tiny_checkpoint
from _paths import DATASETS, dataset_subset

from napari_tmunet import registry
from napari_tmunet.checkpoint_header import read_header
from napari_tmunet.training.finetune import FinetuneJob, TrainingPair, run_finetune

UDIAT = DATASETS / "UDIAT"
STEMS = ["000001", "000002", "000003", "000004", "000005", "000006"]
pytestmark = [
    pytest.mark.skipif(not (UDIAT / "images").is_dir(), reason="shared datasets not present"),
    pytest.mark.usefixtures("one_torch_thread"),
]


def unknown_kind_checkpoint(path):
    """A tiny 32 x 32 model whose metadata records no modality, as `fit` writes one."""
    return tiny_checkpoint(path, size=32, metadata={})


def check_ultrasound(result, run_dir):
    """The run's result, plan and both checkpoints say the model is for ultrasound."""
    assert result["modality"] == "ultrasound"
    assert (run_dir / "finetune.json").read_text().count('"modality": "ultrasound"') == 1
    for name in ("best.pt", "last.pt"):
        metadata = read_header(run_dir / "train" / name)["metadata"]
        assert metadata["modality"] == "ultrasound", name
    assert registry.model_modality(result["best_checkpoint"]) == "ultrasound"


def test_a_folder_fine_tune_from_a_checkpoint_of_no_modality_is_for_the_folders_kind(
    tmp_path,
):
    start = unknown_kind_checkpoint(tmp_path / "fit" / "best.pt")
    assert registry.model_modality(start) == ""  # the start says nothing
    folder = dataset_subset(UDIAT, tmp_path / "busi", STEMS)
    run_dir = tmp_path / "run"
    job = FinetuneJob(
        run_dir=run_dir,
        dataset_folder=str(folder),
        start_model=str(start),
        steps=2,
        batch_size=2,
        device="cpu",
    )
    check_ultrasound(run_finetune(job, threading.Event(), {}), run_dir)


def test_a_pair_fine_tune_from_a_checkpoint_of_no_modality_is_for_the_pairs_kind(tmp_path):
    from napari_tmunet.data.images import read_image

    start = unknown_kind_checkpoint(tmp_path / "fit" / "best.pt")
    image = read_image(UDIAT / "images" / "000002.png")
    (mask_path,) = (UDIAT / "masks").glob("000002.*")
    mask = read_image(mask_path)
    labels = ((mask if mask.ndim == 2 else mask[..., 0]) > 0).astype("uint8")
    run_dir = tmp_path / "run"
    job = FinetuneJob(
        run_dir=run_dir,
        pairs=[TrainingPair("000002", image, labels)],
        start_model=str(start),
        steps=2,
        batch_size=2,
        device="cpu",
    )
    check_ultrasound(run_finetune(job, threading.Event(), {}), run_dir)


def test_a_start_that_records_a_modality_keeps_it(tmp_path):
    """A start checkpoint's own modality wins over the data's (a nuclei model fine-tuned
    on ultrasound scans stays a nuclei model, as before)."""
    start = tiny_checkpoint(tmp_path / "fit" / "best.pt", size=32, metadata={"modality": "nuclei"})
    folder = dataset_subset(UDIAT, tmp_path / "busi", STEMS)
    run_dir = tmp_path / "run"
    job = FinetuneJob(
        run_dir=run_dir, dataset_folder=str(folder), start_model=str(start), steps=2,
        batch_size=2, device="cpu",
    )  # fmt: skip
    result = run_finetune(job, threading.Event(), {})
    assert result["modality"] == "nuclei"
    assert read_header(run_dir / "train" / "best.pt")["metadata"]["modality"] == "nuclei"


@pytest.mark.gui
def test_the_dock_makes_a_folder_fine_tune_of_a_no_modality_checkpoint_active_for_its_kind(
    make_napari_viewer, qtbot, tmp_path
):
    """Tester 34's steps in the Fine-tune dock (threaded path): Source a Folder of breast
    ultrasound scans, Start from a checkpoint file that records no modality. Stopped before
    its first step, the status names what Segment goes on using for such images (the
    shipped ultrasound model), not the file that never was active (F5); run 2 steps and
    made active, the model is saved as an ultrasound model (F1), as predict reads it."""
    from napari_tmunet import _docks, settings

    start = unknown_kind_checkpoint(tmp_path / "fit" / "best.pt")
    folder = dataset_subset(UDIAT, tmp_path / "busi", STEMS)
    viewer = make_napari_viewer()
    tune = _docks.open_dock(viewer, "Fine-tune")[1]
    tune.dataset_folder.value = str(folder)
    tune.model.value = "Checkpoint file..."
    tune.checkpoint.value = str(start)
    tune.steps.value, tune.batch_size.value, tune.device.value = 2, 2, "cpu"
    qtbot.waitUntil(lambda: not tune._folder_unread(), timeout=60_000)  # Folder read
    shipped = registry.model_for_modality("ultrasound")

    tune.run_folder.value = str(tmp_path / "stopped")
    tune.steps.value = 500  # stopped long before its end
    tune.start_button.native.click()
    qtbot.waitUntil(lambda: tune.worker is not None, timeout=60_000)  # the threaded path
    tune.stop_button.native.click()
    qtbot.waitUntil(lambda: not tune.running, timeout=120_000)
    assert tune.active.current is None
    assert shipped is not None  # the package ships an ultrasound model
    assert tune.status.value == f"stopped before any training step; {shipped.name} stays active"
    assert "best.pt" not in tune.status.value

    tune.run_folder.value, tune.steps.value = str(tmp_path / "run"), 2
    tune.start_button.native.click()
    qtbot.waitUntil(lambda: tune.worker is not None, timeout=60_000)
    qtbot.waitUntil(lambda: not tune.running, timeout=300_000)
    assert tune.error == "" and tune.result["trained"] == 2, tune.status.value
    assert "best.pt stays active" not in tune.status.value  # it was never active
    if not tune.use_anyway_button.native.isHidden():  # not made active by itself
        tune.use_anyway_button.native.click()
    assert tune.active.current.modality == "ultrasound"
    assert settings.saved_active_models()["current"]["modality"] == "ultrasound"
