#!/bin/bash
# A data call: the carried parts to $DATA, joined when complete; then poll $1 seconds (0).
source bench/device/common.sh
receive_parts
poll "${1:-0}"
