#!/bin/bash
# First call of a campaign: wheels, any carried data, then the detached supervisor.
#   bash bench/device/start.sh --plan bench/plans/A.json --only 'RUN*' ...
source bench/device/common.sh
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv
receive_parts
# The supervisor and its fits run from a copy of the tree: every later call re-sends the
# working tree, and a fit importing napari_tmunet while it is rewritten fails
# (Generalist-18: 3 of 4 fits, "No module named 'napari_tmunet.model.unet'").
CODE=$ROOT-code
rm -rf "$CODE" && mkdir -p "$CODE"
tar -cf - --exclude=./.git --exclude=./.gpu-up --exclude=./.whl --exclude=./.venv . | tar -xf - -C "$CODE"
(cd "$CODE" && python3 -m trainer.campaign start --root "$ROOT" --data "$DATA" --gpus 0 \
    --slots "${SLOTS:-8}" --mps "$@")
sleep 20
python3 -m trainer.campaign status --root "$ROOT"
