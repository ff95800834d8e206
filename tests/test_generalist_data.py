"""bench/ tools of issue 18: combined dataset folders, split files, cross-dataset scores."""

import json
import sys

import numpy as np
import pytest
from _paths import REPO
from PIL import Image

from napari_tmunet.data.cache import build_cache
from napari_tmunet.data.datasets import find_pairs, load_split

sys.path.insert(0, str(REPO / "bench"))
import combine_datasets  # noqa: E402
import cross_eval  # noqa: E402
import gate_probe  # noqa: E402
import make_splits  # noqa: E402

SPLITS = REPO / "bench" / "splits"
RNG = np.random.default_rng(3)


def _dataset(root, names, size=(12, 10), image_suffix=".png"):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for name in names:
        image = RNG.integers(0, 256, (*size, 3), dtype=np.uint8)
        Image.fromarray(image).save(root / "images" / f"{name}{image_suffix}")
        mask = np.zeros(size, np.uint8)
        if not name.startswith("normal"):
            mask[2:6, 3:7] = 255
        Image.fromarray(mask).save(root / "masks" / f"{name}.png")
    return root


def test_combine_prefixes_names_and_is_idempotent(tmp_path):
    a = _dataset(tmp_path / "a", ["1", "2"], image_suffix=".jpg")
    b = _dataset(tmp_path / "b", ["1", "x y (3)"])
    out = tmp_path / "out"
    assert combine_datasets.combine(out, {"kv": a, "cvc": b}) == 4
    assert combine_datasets.combine(out, {"kv": a, "cvc": b}) == 4  # again: no-op
    names = [p.name for p in find_pairs(out)]
    assert sorted(names) == ["cvc_1", "cvc_x y (3)", "kv_1", "kv_2"]
    assert (out / "images" / "kv_1.jpg").resolve() == (a / "images" / "1.jpg").resolve()
    with pytest.raises(SystemExit, match="cvc_1.png exists"):
        combine_datasets.combine(out, {"cvc": a})  # cvc_1 would be another image


def test_stratified_split_keeps_class_shares_and_duplicates(tmp_path):
    names = [f"benign ({i})" for i in range(30)] + [f"normal ({i})" for i in range(10)]
    root = _dataset(tmp_path / "busi", names)
    twin = (root / "images" / "benign (0).png").read_bytes()
    (root / "images" / "normal (9).png").write_bytes(twin)  # the same image in two classes
    split = make_splits.stratified_split(root)
    counts = {part: [n.split()[0] for n in split[part]] for part in split}
    assert counts["test"].count("benign") == 6 and counts["valid"].count("benign") == 3
    assert sum(len(v) for v in split.values()) == 40
    part_of = {n: part for part, members in split.items() for n in members}
    assert part_of["benign (0)"] == part_of["normal (9)"]
    assert make_splits.stratified_split(root) == split  # seeded


def test_combined_split_names_match_combined_folder(tmp_path):
    a = _dataset(tmp_path / "a", [str(i) for i in range(10)])
    b = _dataset(tmp_path / "b", [str(i) for i in range(10)])
    combine_datasets.combine(tmp_path / "out", {"a": a, "b": b})
    split_a, split_b = make_splits.random_split(a), make_splits.random_split(b)
    both = make_splits.combined({"a": split_a, "b": split_b})
    assert both["test"] == [f"a_{n}" for n in split_a["test"]] + [f"b_{n}" for n in split_b["test"]]
    checked, _ = load_split_from(tmp_path / "s.json", both, tmp_path / "out")
    assert {k: sorted(v) for k, v in checked.items()} == {k: sorted(v) for k, v in both.items()}


def load_split_from(path, split, root):
    path.write_text(json.dumps(split))
    return load_split(path, find_pairs(root))


@pytest.mark.parametrize("name", ["colonoscopy-combined", "ultrasound-combined"])
def test_committed_combined_splits_are_the_parts_of_the_single_ones(name):
    combined = json.loads((SPLITS / f"{name}.json").read_text())
    sources = (
        {"kvasir": "kvasir-pranet", "cvc": "cvccdb-seed0"}
        if name.startswith("colonoscopy")
        else {"busi": "busi-seed0", "udiat": "udiat-seed0"}
    )
    singles = {p: json.loads((SPLITS / f"{f}.json").read_text()) for p, f in sources.items()}
    assert combined == make_splits.combined(singles)
    every = [n for part in combined.values() for n in part]
    assert len(every) == len(set(every))


def test_cross_eval_summary_and_samples_from_folder_and_cache(tmp_path):
    root = _dataset(tmp_path / "d", ["a", "b", "normal 1"])
    build_cache(root, tmp_path / "d.npz")
    (tmp_path / "names.txt").write_text("b\nnormal 1\n")
    from_folder = list(cross_eval.samples(str(root), None, "test", str(tmp_path / "names.txt")))
    from_cache = list(cross_eval.samples(str(tmp_path / "d.npz"), None, "test", None))
    assert [s[0] for s in from_folder] == ["b", "normal 1"]
    assert [s[0] for s in from_cache] == ["a", "b", "normal 1"]
    np.testing.assert_array_equal(from_folder[0][2], from_cache[1][2])
    rows = [
        {"name": "a", "dice": 0.9, "iou": 0.8, "mask_pixels": 16, "pred_pixels": 15},
        {"name": "b", "dice": 0.0, "iou": 0.0, "mask_pixels": 16, "pred_pixels": 0},
        {"name": "c", "dice": 0.4, "iou": 0.25, "mask_pixels": 9, "pred_pixels": 20},
        {"name": "n1", "dice": 0.0, "iou": 0.0, "mask_pixels": 0, "pred_pixels": 3},
        {"name": "n2", "dice": 1.0, "iou": 1.0, "mask_pixels": 0, "pred_pixels": 0},
    ]
    summary = cross_eval.summarise(rows)
    assert summary["lesion_images"] == 3 and summary["empty_mask_images"] == 2
    assert summary["dice_mean"] == pytest.approx(1.3 / 3)
    assert summary["dice_median"] == pytest.approx(0.4)
    assert (summary["below_half"], summary["zero_dice"], summary["empty_predictions"]) == (2, 1, 1)
    assert summary["empty_mask_with_prediction"] == 1


def test_parts_split_and_join_round_trip(tmp_path):
    import parts

    data = RNG.integers(0, 256, 2_500_000, dtype=np.uint8).tobytes()
    path = tmp_path / "c.npz"
    path.write_bytes(data)
    pieces = parts.split(path, max_mib=1)
    assert [p.stat().st_size for p in pieces] == [1 << 20, 1 << 20, 2_500_000 - (2 << 20)]
    path.unlink()
    pieces[1].write_bytes(pieces[1].read_bytes()[:-1] + b"x")  # a damaged part
    with pytest.raises(SystemExit, match="SHA-256"):
        parts.join(path, keep=True)
    assert not path.exists()
    pieces[1].unlink()
    with pytest.raises(SystemExit, match="part1"):
        parts.join(path)
    path.write_bytes(data)
    parts.split(path, max_mib=1)
    path.unlink()
    assert parts.join(path).read_bytes() == data
    assert not any(p.exists() for p in pieces)


def test_the_nuclei_splits_keep_the_shipped_models_monuseg_parts_and_cpm_test_out():
    """MoNuSeg's parts are those of the shipped nuclei model's run (split seed 0), so its
    test tiles stay unseen; CPM-15's test part is in no training or validation part."""
    shipped = json.loads(
        (REPO / "docs/runs/gpu-2026-11-28/MoNuSeg-tmunet-b-seed0/split.json").read_text()
    )
    combined = json.loads((SPLITS / "nuclei-combined.json").read_text())
    singles = {p: json.loads((SPLITS / f"nuclei-{p}.json").read_text()) for p in ("monuseg", "cpm")}
    for part in ("train", "valid", "test"):
        assert [n.removeprefix("monuseg_") for n in singles["monuseg"][part]] == shipped[part]
        assert combined[part] == singles["monuseg"][part] + singles["cpm"][part]
    seen = set(combined["train"]) | set(combined["valid"])
    assert singles["cpm"]["test"] and not seen & set(singles["cpm"]["test"])


def test_gate_probe_chooses_the_cutoff_that_clears_faint_guesses():
    """Three lesions the model is sure of (0.95) and faint (0.6) guesses on two lesion-free
    images: the chosen cutoff clears the guesses and keeps the lesions."""
    from napari_tmunet.postprocess import compact

    def row(name, value, lesion):
        probability = np.zeros((20, 20), np.float32)
        probability[5:15, 5:15] = value
        mask = probability > 0.5 if lesion else np.zeros((20, 20), bool)
        return name, compact(probability), mask

    rows = [row(n, 0.95, True) for n in "abc"] + [row(n, 0.6, False) for n in ("n1", "n2")]
    table, empty = gate_probe.dice_table(rows, threshold=0.5)  # (images, cutoffs)
    best = int(np.argmax(table.mean(0)))
    assert 0.6 < gate_probe.CUTOFFS[best] <= 0.95
    assert table[:, best].tolist() == [1.0] * 5 and empty[3:, best].all()
    assert not empty[3:, 0].any()  # no gate: the guesses stay
    lesion = np.array([True] * 3 + [False] * 2)
    summary = gate_probe.bootstrap(table, empty, lesion, draws=50)
    assert summary["draws_scored"] > 0
    assert summary["false_mask_rate"] == 0.0 and summary["lesion_images_left_empty"] == 0.0
