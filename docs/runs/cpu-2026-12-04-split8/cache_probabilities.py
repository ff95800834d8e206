import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, "/work/wt118")
from napari_tmunet.data.images import read_image
from napari_tmunet.inference import predict_probability
from napari_tmunet.registry import load_model

CACHE = Path("/tmp/h118/preds")
CACHE.mkdir(exist_ok=True)
ck = load_model("/work/wt118/napari_tmunet/weights/tmunet-b-nuclei.pt", device="cpu")
items = [
    (
        "monuseg_TCGA-2Z-A9J9",
        Path("/work/shared/datasets/MoNuSeg/images/TCGA-2Z-A9J9-01A-01-TS1.tif"),
    )
]
items += [(f"cpm_{p.stem}", p) for p in sorted(Path("/work/extra-data/CPM15/images").glob("*.png"))]
items += [
    (f"dsb_{p.stem}", p)
    for p in sorted(Path("/work/extra-data/DSB2018-stage1test/images").glob("*.png"))
]
for key, path in items:
    f = CACHE / f"{key}.npy"
    if f.exists():
        continue
    prob, _ = predict_probability(read_image(path, allow_stack=False), ck, mode="tile")
    np.save(f, prob.astype(np.float32))
    print(key, flush=True)
