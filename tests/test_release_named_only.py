"""``python -m trainer.release`` rewrites only the models named by ``--model``: the other
shipped models' files, registry entries and model cards stay byte for byte, an error
leaves everything as it was, and several cross_eval summaries (one recipe's seeds) make
one table row. Releases go into a copy of the checkout's weights and models.md
(``--into``), from the real run records, scores and shipped files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from _paths import REPO

from trainer import release

WEIGHTS = REPO / "napari_tmunet" / "weights"
MODELS_MD = REPO / "docs" / "models.md"
F20K = REPO / "docs" / "runs" / "gpu-2026-12-05c"  # the shipped colonoscopy generalist
G22 = REPO / "docs" / "runs" / "gpu-2026-12-04d" / "scores"  # Generalist-22's two seeds
NUCLEI_SCORE = REPO / "docs/runs/gpu-2026-12-01d/scores/nuc-new-monuseg/summary.json"
NAMES = ("tmunet-b-colonoscopy", "tmunet-b-nuclei", "tmunet-b-ultrasound")


def _checkout_copy(root: Path) -> Path:
    """``root`` with a copy of the shipped weights, registry.json and docs/models.md."""
    weights = root / "napari_tmunet" / "weights"
    weights.mkdir(parents=True)
    for name in (*[f"{n}.pt" for n in NAMES], "registry.json"):
        shutil.copy(WEIGHTS / name, weights / name)
    (root / "docs").mkdir()
    shutil.copy(MODELS_MD, root / "docs" / "models.md")
    return root


def _files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (temporary ones included) by its relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _colonoscopy(checkpoint: Path, name: str = "tmunet-b-colonoscopy") -> list[str]:
    """``--model`` and ``--test-score`` options that ship the colonoscopy generalist F20k
    from ``checkpoint`` (a copy of its shipped file) under ``name``."""
    scores = F20K / "scores"
    return [
        "--model", name, "colonoscopy", str(checkpoint),
        str(F20K / "COLON-generalist-F20k-tmunet-b"),
        "--test-score", "colonoscopy", "Kvasir-SEG test-100",
        str(scores / "test-colon-F20k-kvasir" / "summary.json"),
        "--test-score", "colonoscopy", "CVC-ClinicDB test part (split seed 0)",
        str(scores / "test-colon-F20k-cvc" / "summary.json"),
    ]  # fmt: skip


def test_releasing_one_model_leaves_the_others_byte_for_byte(tmp_path):
    root = _checkout_copy(tmp_path / "checkout")
    checkpoint = shutil.copy(WEIGHTS / "tmunet-b-colonoscopy.pt", tmp_path / "colon.pt")
    before = _files(root)
    notes = str(REPO / "bench" / "model_notes.json")
    threads = torch.get_num_threads()
    release.main([*_colonoscopy(Path(checkpoint)), "--notes", notes, "--into", str(root)])
    assert torch.get_num_threads() == threads  # the caller's setting back (a test worker's)

    after = _files(root)
    assert sorted(after) == sorted(before)  # no temporary file left, none removed
    weights = "napari_tmunet/weights/"
    for name in NAMES[1:]:  # the models not named: their files as they were
        assert after[f"{weights}{name}.pt"] == before[f"{weights}{name}.pt"], name
    assert after[f"{weights}tmunet-b-colonoscopy.pt"] != before[f"{weights}tmunet-b-colonoscopy.pt"]

    old, new = (json.loads(f[f"{weights}registry.json"]) for f in (before, after))
    assert [e["file"] for e in new["models"]] == [e["file"] for e in old["models"]]  # order
    assert new["models"][1:] == old["models"][1:]
    # byte for byte: the new file with the old colonoscopy entry put back is the old file
    new["models"][0] = old["models"][0]
    assert json.dumps(new, indent=2).encode() + b"\n" == before[f"{weights}registry.json"]

    old_text, new_text = (f["docs/models.md"].decode() for f in (before, after))
    old_header, old_cards = release.split_cards(old_text)
    new_header, new_cards = release.split_cards(new_text)
    assert list(new_cards) == list(old_cards) == list(NAMES)  # the cards' order
    assert new_header == old_header
    for name in NAMES[1:]:
        assert new_cards[name] == old_cards[name], name
    colon = new_cards["tmunet-b-colonoscopy"]
    assert colon != old_cards["tmunet-b-colonoscopy"]  # re-timed and re-scored
    assert "| **Kvasir-SEG test-100** | 100 | 89.16 / 94.79 | 83.01 | 5 | 0 | - |" in colon
    assert new_text == old_text.replace(old_cards["tmunet-b-colonoscopy"], colon)


@pytest.mark.parametrize("fault", ["damaged checkpoint", "run folder without records"])
def test_an_error_after_a_shipped_model_leaves_every_file_as_it_was(tmp_path, fault, capsys):
    """The first model ships (a new name, appended), then the second fails: no weights
    file, registry entry or card of either is written."""
    root = _checkout_copy(tmp_path / "checkout")
    checkpoint = shutil.copy(WEIGHTS / "tmunet-b-colonoscopy.pt", tmp_path / "colon.pt")
    nuclei_checkpoint = shutil.copy(WEIGHTS / "tmunet-b-nuclei.pt", tmp_path / "nuclei.pt")
    nuclei_run = REPO / "docs" / "runs" / "gpu-2026-12-01d" / "NUC-combined-B-tmunet-b"
    if fault == "damaged checkpoint":
        nuclei_checkpoint = tmp_path / "damaged.pt"
        nuclei_checkpoint.write_bytes(b"not a checkpoint")
        named = "damaged.pt"
    else:
        nuclei_run = tmp_path / "not-a-run"
        nuclei_run.mkdir()
        named = "not-a-run"
    before = _files(root)
    argv = [*_colonoscopy(Path(checkpoint), "tmunet-b-colonoscopy-f20k"),
            "--model", "tmunet-b-nuclei", "nuclei", str(nuclei_checkpoint), str(nuclei_run),
            "--test-score", "nuclei", "MoNuSeg test part", str(NUCLEI_SCORE),
            "--into", str(root)]  # fmt: skip
    with pytest.raises(SystemExit, match=f"(?s){named}.*Nothing was written"):
        release.main(argv)
    assert "shipped tmunet-b-colonoscopy-f20k" in capsys.readouterr().out  # it had shipped
    assert _files(root) == before


def test_a_missing_score_summary_is_named_and_nothing_is_written(tmp_path):
    root = _checkout_copy(tmp_path / "checkout")
    checkpoint = shutil.copy(WEIGHTS / "tmunet-b-colonoscopy.pt", tmp_path / "colon.pt")
    before = _files(root)
    absent = tmp_path / "scores" / "summary.json"
    argv = [*_colonoscopy(Path(checkpoint)), "--other-score", "colonoscopy", "a proxy",
            str(absent), "--into", str(root)]  # fmt: skip
    with pytest.raises(SystemExit, match=f"{absent}: cannot be read"):
        release.main(argv)
    assert _files(root) == before


def test_several_summaries_make_one_row_of_their_mean_and_each_seed():
    """Generalist-22's two-seed proxy rows, as docs/models.md shows them (put there by
    hand before), from the two seeds' cross_eval summaries."""
    kvasir_only = "**proxy: Kvasir only -> CVC-ClinicDB test part, two training seeds**"
    cvc_only = (
        "proxy: F10k at its own length (3,200 steps), ClinicDB only -> Kvasir-SEG "
        "test-100, two training seeds"
    )  # fmt: skip (no longer bold: Generalist-26's is)
    rows = [
        ["colonoscopy", label, *(str(G22 / f"xtest-{run}-s{seed}-on-{on}" / "summary.json")
                                 for seed in (0, 1))]
        for label, run, on in ((kvasir_only, "kvasir-only-F10k", "cvc"),
                               (cvc_only, "cvc-only-F10k", "kvasir"))
    ]  # fmt: skip
    scores = release.read_scores([], rows)["colonoscopy"]
    table = release.score_table(scores).splitlines()
    assert len(table) == 2 + 2  # heading, rule and one row per recipe
    assert table[3] == (
        f"| {cvc_only} | 100 | **70.97** (73.57 / 68.37) / 82.81, 74.05 | 60.11 | 18, 22 "
        "| 0, 0 | - |"
    )
    assert table[3] in MODELS_MD.read_text()  # the card's row, now without a hand edit
    # the card's IoU 71.31 was the mean of the rounded 71.91 and 70.70; from the summaries
    # (71.905 and 70.697) the mean is 71.30
    assert table[2] == (
        f"| {kvasir_only} | 110 | **79.96** (80.28 / 79.64) / 89.60, 88.83 | 71.30 | 14, 12 "
        "| 1, 1 | - |"
    )
    one = release.score_table([(cvc_only, scores[1][1][0], False)]).splitlines()[2]
    assert one == f"| {cvc_only} | 100 | 73.57 / 82.81 | 63.11 | 18 | 0 | - |"  # one seed


def test_several_summaries_with_instances_and_lesion_free_images():
    """PQ / AJI are the seeds' means; counts and false masks are listed per seed."""
    base = {"lesion_images": 9, "dice_mean": 0.8, "dice_median": 0.85, "iou_mean": 0.7,
            "below_half": 1, "empty_predictions": 0, "empty_mask_images": 3,
            "empty_mask_with_prediction": 1, "pq_mean": 0.6, "aji_mean": 0.5}  # fmt: skip
    other = base | {"lesion_images": 10, "dice_mean": 0.7, "empty_mask_with_prediction": 2,
                    "pq_mean": 0.5, "aji_mean": 0.4}  # fmt: skip
    (row,) = release.score_table([("two seeds", [base, other], False)]).splitlines()[2:]
    assert row == (
        "| two seeds | 9, 10 | **75.00** (80.00 / 70.00) / 85.00, 85.00 | 70.00 | 1, 1 | 0, 0 "
        "| 1 of 3, 2 of 3 | 0.550 / 0.450 |"
    )


def test_the_full_form_writes_what_it_always_wrote_and_new_names_are_appended():
    """All models named: the header and the new cards joined by blank lines, the registry
    only the new entries, as before. A new name: appended after the kept ones."""
    header, old = release.split_cards(MODELS_MD.read_text())
    new = {name: f"## {name} (m)\n\n- new card of {name}\n" for name in old}
    assert release.merged_cards(header, old, new) == header + "\n".join(new.values())
    added = release.merged_cards(header, old, {"tmunet-b-x": "## tmunet-b-x (m)\n\n- x\n"})
    assert added == MODELS_MD.read_text().rstrip("\n") + "\n\n## tmunet-b-x (m)\n\n- x\n"

    registry = json.loads((WEIGHTS / "registry.json").read_text())
    records = [dict(e, test_dice=0.5) for e in registry["models"]]
    assert release.merged_registry(registry, records) == {"models": records}
    extra = {"file": "tmunet-b-x.pt", "name": "TM-UNet x"}
    assert release.merged_registry(registry, [extra])["models"] == [*registry["models"], extra]
