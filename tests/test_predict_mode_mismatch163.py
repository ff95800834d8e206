"""``napari-tmunet-predict --mode`` other than the mode the model was trained for is said,
once per run, as Segment's dock says it (``_segment_jobs.mode_mismatch``, fix-159).

The nuclei model was trained on tiles at full resolution: resizing a 1000 x 1000 MoNuSeg
tile to its 256 x 256 input shrinks the nuclei 3.9x (Dice 0.52 for 0.82 in tiles), and
predict said nothing of it. Real MoNuSeg tiles, CPU, the shipped model.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tifffile
from _paths import DATASETS

from napari_tmunet import registry
from napari_tmunet.data.images import read_image
from napari_tmunet.predict_cli import main

MONUSEG = DATASETS / "MoNuSeg" / "images"
TILES = ("TCGA-2Z-A9J9-01A-01-TS1", "TCGA-18-5592-01Z-00-DX1")  # 1000 x 1000 H&E tiles
WARNING = (
    "warning: --mode resize for 'TM-UNet nuclei': the model was trained on tiles at full "
    "resolution: pass --mode tile, or leave --mode out"
)

pytestmark = [
    pytest.mark.skipif(not MONUSEG.is_dir(), reason=f"no MoNuSeg at {MONUSEG}"),
    pytest.mark.usefixtures("one_torch_thread"),
]


def predict(capsys, source, out, *options) -> str:
    """stderr of a CPU run of predict on ``source`` (the model chosen by modality)."""
    code = main([str(source), str(out), *options, "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0, err
    return err


def test_resize_for_the_nuclei_model_is_said_once(tmp_path, capsys):
    """Two MoNuSeg tiles with ``--mode resize``: the nuclei model is chosen for them (its
    checkpoint says tile) and one warning names the mode to pass; both masks are
    written, resized as asked."""
    assert registry.load_model("TM-UNet nuclei", "cpu").inference_mode == "tile"
    source = tmp_path / "in"
    source.mkdir()
    for name in TILES:
        shutil.copy(MONUSEG / f"{name}.tif", source)
    err = predict(capsys, source, tmp_path / "out", "--mode", "resize")
    assert "model 'TM-UNet nuclei' (mode resize, instances as TIFF)" in err, err
    assert err.count(WARNING) == 1, err
    assert err.count("trained on tiles at full resolution") == 1, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        f"{name}.tif" for name in TILES
    )


@pytest.mark.parametrize("mode", [["--mode", "tile"], []], ids=["tile", "auto"])
def test_the_models_own_mode_is_not_warned_about(tmp_path, capsys, mode):
    """A 256 x 256 crop of a MoNuSeg tile (one tile of the model: a quick run) with
    ``--mode tile`` or no ``--mode`` (the model's own): no warning."""
    source = tmp_path / "in"
    source.mkdir()
    image = read_image(MONUSEG / f"{TILES[0]}.tif")
    tifffile.imwrite(source / "crop.tif", np.ascontiguousarray(image[:256, :256]))
    err = predict(capsys, source, tmp_path / "out", *mode)
    assert "model 'TM-UNet nuclei' (mode tile, instances as TIFF)" in err, err
    assert "trained on tiles" not in err and "warning: --mode" not in err, err
    assert (tmp_path / "out" / "crop.tif").is_file()
