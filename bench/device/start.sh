#!/bin/bash
# First call of a campaign: wheels, any carried data, then the detached supervisor.
#   bash bench/device/start.sh --plan bench/plans/A.json --only 'RUN*' ...
source bench/device/common.sh
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv
receive_parts
python3 -m trainer.campaign start --root "$ROOT" --data "$DATA" --gpus 0 --slots "${SLOTS:-8}" --mps "$@"
sleep 20
python3 -m trainer.campaign status --root "$ROOT"
