"""Write the split files of ``bench/splits/`` (issue 18's generalist models), reproducibly.

    python bench/make_splits.py --extra ../extra-data --shared ../shared/datasets

- ``kvasir-pranet.json``: PraNet's train-900 -> train + a fixed 10% valid (seed 0, as
  ``resolve_split`` carves one); PraNet's test-100 -> test.
- ``cvccdb-seed0.json`` / ``udiat-seed0.json``: the random 7:1:2 split of seed 0, as
  ``napari-tmunet-train fit --preset cvccdb|udiat --split-seed 0`` makes it.
- ``busi-seed0.json``: 7:1:2 per class (benign, malignant, normal), seed 0; identical
  images stay in one part (the class of a group's first image decides).
- ``colonoscopy-combined.json`` / ``ultrasound-combined.json``: the parts of the sets
  above, names prefixed as ``bench/combine_datasets.py`` does (kvasir_, cvc_; busi_, udiat_).
- ``colonoscopy-{kvasir,cvc}.json`` / ``ultrasound-{busi,udiat}.json``: one set's parts in
  the combined names, to train on one set or score one set's test part from the
  combined folder or cache (images in no part are unused).
- ``nuclei-combined.json``, ``nuclei-{monuseg,cpm}.json``: the same for H&E nuclei,
  MoNuSeg's random 7:1:2 split of seed 0 (``fit --preset monuseg --split-seed 0``) and
  CPM-15's (seed 0; its test part stays out of training, for the cross-dataset score).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from combine_datasets import combined_name  # noqa: E402

from napari_tmunet.data.datasets import (  # noqa: E402
    SPLIT_PARTS,
    Split,
    content_groups,
    find_pairs,
    make_split,
    natural_key,
    resolve_split,
    save_split,
    split_from_lists,
)

HERE = Path(__file__).parent / "splits"


def kvasir_split(root: Path) -> Split:
    """PraNet's lists; 10% of train-900 carved as valid with seed 0."""
    lists = split_from_lists(root / "pranet_train900.txt", root / "pranet_test100.txt")
    return resolve_split(lists, find_pairs(root), seed=0, source="PraNet lists")[0]


def random_split(root: Path, seed: int = 0) -> Split:
    """The trainer's random 7:1:2 split (identical images in one part)."""
    return make_split(find_pairs(root), seed)


def stratified_split(root: Path, seed: int = 0) -> Split:
    """7:1:2 within each class (the name's first word), identical images kept together."""
    pairs = find_pairs(root)
    groups = content_groups(pairs)
    first_class: dict[int, str] = {}
    for pair, group in zip(pairs, groups, strict=True):
        first_class.setdefault(group, pair.name.split()[0])
    split: Split = {part: [] for part in SPLIT_PARTS}
    for label in sorted(set(first_class.values())):
        pick = zip(pairs, groups, strict=True)
        chosen = [(p.name, g) for p, g in pick if first_class[g] == label]
        names, ids = zip(*chosen, strict=True)
        for part, members in make_split(list(names), seed, groups=list(ids)).items():
            split[part] += members
    return {part: sorted(split[part], key=natural_key) for part in SPLIT_PARTS}


def combined(splits: dict[str, Split]) -> Split:
    """Parts of several splits with prefixed names (prefix -> split)."""
    return {
        part: [combined_name(prefix, n) for prefix, s in splits.items() for n in s[part]]
        for part in SPLIT_PARTS
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--extra", default="../extra-data", help="folder of extract.sh's output")
    p.add_argument("--shared", default="../shared/datasets", help="the shared datasets")
    p.add_argument("--out", default=str(HERE))
    args = p.parse_args(argv)
    extra, shared, out = Path(args.extra), Path(args.shared), Path(args.out)
    kvasir, cvc = kvasir_split(extra / "Kvasir-SEG"), random_split(shared / "CVC-ClinicDB")
    busi, udiat = stratified_split(extra / "BUSI"), random_split(shared / "UDIAT")
    monuseg, cpm = random_split(shared / "MoNuSeg"), random_split(extra / "CPM15")
    files = {
        "kvasir-pranet": kvasir,
        "cvccdb-seed0": cvc,
        "busi-seed0": busi,
        "udiat-seed0": udiat,
        "colonoscopy-combined": combined({"kvasir": kvasir, "cvc": cvc}),
        "colonoscopy-kvasir": combined({"kvasir": kvasir}),
        "colonoscopy-cvc": combined({"cvc": cvc}),
        "ultrasound-combined": combined({"busi": busi, "udiat": udiat}),
        "ultrasound-busi": combined({"busi": busi}),
        "ultrasound-udiat": combined({"udiat": udiat}),
        "nuclei-combined": combined({"monuseg": monuseg, "cpm": cpm}),
        "nuclei-monuseg": combined({"monuseg": monuseg}),
        "nuclei-cpm": combined({"cpm": cpm}),
    }
    for name, split in files.items():
        save_split(out / f"{name}.json", split)
        print(f"{name}.json: " + ", ".join(f"{k} {len(v)}" for k, v in split.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
