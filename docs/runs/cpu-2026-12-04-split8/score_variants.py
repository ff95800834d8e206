import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, "/work/wt118")
from split_variants import split, tiny

from napari_tmunet.data.images import read_image
from napari_tmunet.metrics import instance_scores

prefix, data = sys.argv[1], Path(sys.argv[2])
names = sys.argv[3].split(",") if len(sys.argv) > 3 else None
variants = {"4": (1, 1, 1), "8": (2, 2, 2), "flood8": (2, 1, 1)}  # (flood, markers, markerless)
res = {k: [] for k in variants}
for f in sorted(Path("preds").glob(prefix + "*.npy")):
    name = f.stem[len(prefix) :]
    if names and name not in names:
        continue
    pred = np.load(f) > 0.5
    gt = read_image(data / "masks" / (name + ".png"), allow_stack=False)
    for k, v in variants.items():
        labels = split(pred, conn_ws=v[0], conn_mk=v[1], conn_or=v[2])
        r = instance_scores(labels, gt)
        r["tiny"] = tiny(labels)[0]
        res[k].append(r)
for k, rows in res.items():
    print(
        k,
        len(rows),
        {
            m: round(float(np.nanmean([r[m] for r in rows])), 4)
            for m in ("pq", "aji", "dq", "sq", "pred_objects", "tiny")
        },
        {m + "_median": round(float(np.nanmedian([r[m] for r in rows])), 4) for m in ("pq", "aji")},
    )
