"""A model fine-tuned from a checkpoint that records no modality (one made by
``napari-tmunet-train fit``) is for the kind of images it was fine-tuned on (tester 34,
F1): its checkpoint, finetune.json and the run's result say so, so that Segment,
``napari-tmunet-predict`` and the settings agree; real UDIAT images, tiny CPU runs."""

from __future__ import annotations

import threading

import pytest
import torch
from _paths import DATASETS, dataset_subset

from napari_tmunet import registry
from napari_tmunet.checkpoint import save_checkpoint
from napari_tmunet.checkpoint_header import read_header
from napari_tmunet.config import InputConfig, ModelConfig
from napari_tmunet.model import build_model
from napari_tmunet.training.finetune import FinetuneJob, TrainingPair, run_finetune

UDIAT = DATASETS / "UDIAT"
STEMS = ["000001", "000002", "000003", "000004", "000005", "000006"]
pytestmark = [
    pytest.mark.skipif(not (UDIAT / "images").is_dir(), reason="shared datasets not present"),
    pytest.mark.usefixtures("one_torch_thread"),
]


def unknown_kind_checkpoint(path):
    """A tiny 32 x 32 model whose metadata records no modality, as `fit` writes one."""
    path.parent.mkdir(parents=True)
    torch.manual_seed(0)
    config = ModelConfig.variant("t")
    save_checkpoint(path, build_model(config), config, InputConfig(size=(32, 32)), metadata={})
    return path


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
    start = tmp_path / "fit" / "best.pt"
    start.parent.mkdir(parents=True)
    config = ModelConfig.variant("t")
    model = build_model(config)
    save_checkpoint(start, model, config, InputConfig(size=(32, 32)), {"modality": "nuclei"})
    folder = dataset_subset(UDIAT, tmp_path / "busi", STEMS)
    run_dir = tmp_path / "run"
    job = FinetuneJob(
        run_dir=run_dir, dataset_folder=str(folder), start_model=str(start), steps=2,
        batch_size=2, device="cpu",
    )  # fmt: skip
    result = run_finetune(job, threading.Event(), {})
    assert result["modality"] == "nuclei"
    assert read_header(run_dir / "train" / "best.pt")["metadata"]["modality"] == "nuclei"
