# Sourced by the other scripts: the environment of every device call.
# Wheels the GPU image lacks (.whl/, see docs/datasets.md) go to /tmp/site once per machine.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site
ROOT=${CAMPAIGN_ROOT:-/root/campaign}
DATA=${CAMPAIGN_DATA:-/root/data}
mkdir -p "$DATA"
if [ ! -d /tmp/site/xlstm ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || { echo "wheels: carry .whl"; exit 1; }
fi

# Move the carried data parts (.gpu-up/cN) to $DATA and join every file whose parts are
# all there (bench/parts.py checks the SHA-256 and removes the parts).
receive_parts() {
    for folder in .gpu-up/c*/; do
        [ -d "$folder" ] && mv "$folder"* "$DATA"/ 2>/dev/null
    done
    for sums in "$DATA"/*.sha256; do
        [ -e "$sums" ] || continue
        target=${sums%.sha256}
        count=$(cut -d' ' -f2 "$sums")
        have=$(ls "$target".part* 2>/dev/null | wc -l)
        if [ ! -e "$target" ] && [ "$have" = "$count" ]; then
            python3 bench/parts.py join "$target"
        fi
    done
    ls -la "$DATA"
}

# Wait up to $1 seconds while runs train or wait for their data (status each minute), then
# bring the runs that ended home in $OUT (collect --new: at most what one call brings back).
poll() {
    local until=$((SECONDS + $1))
    while [ $SECONDS -lt $until ]; do
        python3 -m trainer.campaign status --root "$ROOT" | tail -20
        grep -q '"state": "running"\|"state": "pending"' "$ROOT/state.json" 2>/dev/null || break
        sleep $(( until - SECONDS < 60 ? (until - SECONDS > 0 ? until - SECONDS : 1) : 60 ))
    done
    python3 -m trainer.campaign collect --new --root "$ROOT" --out "$OUT"
}
