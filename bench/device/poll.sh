#!/bin/bash
# A polling call: wait up to $1 seconds (default 540) and bring ended runs home.
source bench/device/common.sh
poll "${1:-540}"
