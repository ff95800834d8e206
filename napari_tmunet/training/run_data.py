"""The dataset and the train/valid/test split of a training run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..data.cache import NativeCache, decode_folder, load_cache
from ..data.datasets import (
    DATASET_FOLDER,
    DatasetError,
    SplitNamesError,
    _listing,
    dataset_above_hint,
    holds_pictures_with_masks,
    load_split,
    make_split,
    resolve_split,
    split_from_lists,
)
from ..data.images import IMAGE_SUFFIXES
from .config import TrainConfig


def load_dataset(config: TrainConfig) -> NativeCache:
    """Decode the dataset that ``config.data`` names (folder or cache file)."""
    if not config.data:
        raise DatasetError(
            f"no dataset given: pass {DATASET_FOLDER} or a cache file "
            "(--data PATH or --preset NAME)"
        )
    path = Path(config.data).expanduser()
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        raise DatasetError(_image_not_dataset(path))
    if path.is_file():
        cache = load_cache(path)
        if config.max_images:
            cache = cache.subset(range(min(config.max_images, len(cache))))
        return cache
    if path.is_dir():
        return decode_folder(
            path, skip_bad=config.skip_bad, max_images=config.max_images, workers=config.num_workers
        )
    raise DatasetError(
        f"dataset {path} (absolute: {path.resolve()}) does not exist: pass {DATASET_FOLDER}, "
        "or a cache file made by `napari-tmunet-train cache`"
    )


def _image_not_dataset(path: Path) -> str:
    """Why an image file given as the dataset is refused, and which folder to give."""
    folder = path.resolve().parent
    hint = dataset_above_hint(folder)
    if not hint and holds_pictures_with_masks(folder):
        hint = f"; give the folder that holds it, {folder} (pictures with their masks beside them)"
    elif not hint:
        hint = (
            "; put the image in images/ and its mask in masks/ of a folder, or its mask "
            "beside it as NAME_mask.png, and give that folder"
        )
    return f"--data {path} is an image file, not {DATASET_FOLDER} or a cache .npz{hint}"


def resolve_run_split(
    config: TrainConfig, cache: NativeCache, existing: Path | None = None
) -> tuple[dict[str, list[str]], list[str]]:
    """The train/valid/test split of a run, and notes on how it was made.

    Order: an existing run's ``split.json`` (resume), ``split_file``, the dataset's
    official lists (``official_split``), else a random split from ``split_seed`` in
    which identical images stay in one part.
    """
    names = list(cache.names)
    if existing is not None and existing.is_file():
        try:
            return load_split(existing, names, seed=config.split_seed)
        except SplitNamesError as err:
            raise DatasetError(_not_the_runs_data(config, existing, err)) from None
    if config.split_file:
        return load_split(config.split_file, names, seed=config.split_seed)
    if config.official_split:
        root = Path(config.data)
        train_txt, test_txt = root / "train.txt", root / "test.txt"
        if not (train_txt.is_file() and test_txt.is_file()):
            raise DatasetError(
                f"official_split: {root} has no train.txt and test.txt; use a random split "
                "or give --split-file"
            )
        lists = split_from_lists(train_txt, test_txt)
        known = set(names)
        lists = {k: [n for n in v if n in known] for k, v in lists.items()}
        return resolve_split(lists, names, seed=config.split_seed, source=str(root))
    split = make_split(names, config.split_seed, config.split_ratios, groups=cache.groups)
    return split, [f"random split {config.split_ratios} with seed {config.split_seed}"]


def _not_the_runs_data(config: TrainConfig, split: Path, err: SplitNamesError) -> str:
    """Why a resumed run's ``split`` (its split.json) does not fit ``config.data``: the
    data is not the run's (another --data), or no longer holds the run's images."""
    run_dir = split.parent
    missing = (
        f"{len(err.unknown)} of the {err.total} images in its split {split} "
        f"({_listing(err.unknown)})"
    )
    saved = run_dir / "config.json"
    trained = TrainConfig.load(saved).data if saved.is_file() else ""
    if trained and Path(trained).resolve() != Path(config.data).resolve():
        return (
            f"cannot resume {run_dir}: --data {config.data} is not the dataset this run was "
            f"trained on ({trained}): {missing} are not in it; resume with the run's own data "
            "(leave --data out, or give its new place), or start a new run folder to train "
            "on this data"
        )
    return (
        f"cannot resume {run_dir}: its dataset {config.data} no longer holds {missing}; "
        "put those images back, or start a new run folder"
    )


SPLIT_FIX = (
    "use another split seed (--split-seed) or a split file (--split-file) that puts images "
    "with foreground into train"
)


def check_foreground(
    masks_by_part: Mapping[str, Sequence[np.ndarray]],
    where: str,
    fix: str,
    split_fix: str = SPLIT_FIX,
) -> None:
    """Refuse training data whose masks hold no foreground at all, or none in ``"train"``.

    Trained on empty masks a model learns to predict nothing, and scores a perfect Dice
    on empty test masks, so such data is refused before any work.

    Args:
        masks_by_part: the masks of each part of the data (``"train"``, ``"valid"``...).
        where: the data, as the message names it (a folder, "the painted layers"...).
        fix: what the user should do when every mask is empty.
        split_fix: what the user should do when only the training masks are.
    Raises:
        DatasetError: every mask is empty, or every training mask is.
    """
    has = {part: any(np.any(m) for m in masks) for part, masks in masks_by_part.items()}
    n = {part: len(masks) for part, masks in masks_by_part.items()}
    if not any(has.values()):
        count = sum(n.values())
        empty = "the mask" if count == 1 else f"every mask ({count})"
        raise DatasetError(f"{empty} of {where} is empty: {fix}")
    if not has.get("train", True):
        with_fg = " and ".join(part for part, fg in has.items() if fg)
        raise DatasetError(
            f"every training mask of {where} is empty ({n['train']} in the train part; the "
            f"foreground is only in {with_fg}): {split_fix}"
        )
