#!/bin/bash
# The last call: stop what still runs (each fit saves its state), then bring runs home.
source bench/device/common.sh
python3 -m trainer.campaign finish --root "$ROOT" --wait "${1:-60}"
python3 -m trainer.campaign collect --new --root "$ROOT" --out "$OUT"
python3 -m trainer.campaign status --root "$ROOT"
