"""Fine-tune's guess of a picture's mask by name: picture "1" of a dataset folder of 12
pairs is paired with "1"'s mask, not with "12"'s (its name starts with "1"), both when the
folder is opened with File > Open (the reader's layers) and for masks named by hand. Real
CVC-ClinicDB frames and masks."""

from __future__ import annotations

import numpy as np
import pytest
from _paths import DATASETS
from napari.layers import Image, Labels

from napari_tmunet._finetune_pairs import guess_labels, named_after
from napari_tmunet.data.images import read_image, read_mask, write_image, write_mask

pytestmark = pytest.mark.gui

CLINIC = DATASETS / "CVC-ClinicDB"
needs_clinic = pytest.mark.skipif(
    not (CLINIC / "images" / "12.png").is_file(), reason=f"no CVC-ClinicDB at {CLINIC}"
)


@needs_clinic
def test_picture_1_of_a_folder_of_12_pairs_gets_its_own_mask(make_napari_viewer, tmp_path):
    """A folder of CVC-ClinicDB frames 1..12 (images/N.png, masks/N.png) opened as napari
    opens it: each picture's guess is its own mask; on main picture "1" took "12"'s mask,
    the newest layer whose name starts with "1"."""
    for n in range(1, 13):
        image = read_image(CLINIC / "images" / f"{n}.png")[:96, :128]
        mask = read_mask(CLINIC / "masks" / f"{n}.tif")[0][:96, :128]
        write_image(tmp_path / "frames" / "images" / f"{n}.png", np.ascontiguousarray(image))
        write_mask(tmp_path / "frames" / "masks" / f"{n}.png", np.ascontiguousarray(mask))
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path / "frames"), plugin="napari-tmunet")
    images = {la.name: la for la in viewer.layers if isinstance(la, Image)}
    labels = [la for la in viewer.layers if isinstance(la, Labels)]
    assert len(images) == 12 and len(labels) == 12, [la.name for la in viewer.layers]
    for name, image in images.items():
        guess = guess_labels(image, labels)
        assert guess is not None and named_after(guess, image), (name, guess.name)
        assert not any(named_after(other, image) for other in labels if other is not guess), name


@needs_clinic
def test_a_mask_named_by_hand_is_named_after_its_picture_only():
    """Masks a user named: "1 mask" and "1_corrected" belong to picture "1", "12 mask"
    does not; among "1 mask" and a later "12 mask", picture "1" takes "1 mask"."""
    frame = read_image(CLINIC / "images" / "1.png")
    mask = read_mask(CLINIC / "masks" / "1.tif")[0]
    one = Image(frame, name="1", rgb=True)
    own, corrected, other = (Labels(mask.astype(np.uint8), name=n)
                             for n in ("1 mask", "1_corrected", "12 mask"))  # fmt: skip
    assert named_after(own, one) and named_after(corrected, one)
    assert not named_after(other, one)
    assert guess_labels(one, [own, other]) is own
