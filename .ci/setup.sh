#!/usr/bin/env bash
# Set up napari-tmunet on a fresh Debian/Ubuntu machine: system libraries for Qt under
# Xvfb, a virtual environment in .venv with a CPU build of PyTorch and the package with
# its napari extra; `--test` adds the test extras. Safe to run again.
#   bash .ci/setup.sh          # what `napari-tmunet` needs
#   bash .ci/setup.sh --test   # plus pytest, MONAI, medpy, ... (the README's test command)
set -euo pipefail
cd "$(dirname "$0")/.."

EXTRAS="napari"
for arg in "$@"; do
  case "$arg" in
    --test) EXTRAS="napari,test" ;;
    *) echo "setup.sh: unknown option $arg (use --test for the test extras)" >&2; exit 2 ;;
  esac
done

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then SUDO="sudo"; fi
DEBIAN_PACKAGES="xvfb xauth libgl1 libglx-mesa0 libgl1-mesa-dri libopengl0 libglib2.0-0
  libfontconfig1 fonts-dejavu-core libdbus-1-3 libx11-xcb1 libxkbcommon-x11-0 libxcb-icccm4
  libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0
  libxcb-xinerama0 libxcb-xkb1 libxcursor1"
if command -v apt-get >/dev/null; then
  missing=$(dpkg-query -W -f='${Package} ${Status}\n' $DEBIAN_PACKAGES 2>/dev/null |
            grep -c "install ok installed" || true)
  if [ "$missing" -lt "$(echo $DEBIAN_PACKAGES | wc -w)" ]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
      $DEBIAN_PACKAGES >/dev/null
  fi
fi

PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "napari-tmunet needs Python >= 3.11"'
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# CPU build of PyTorch unless one is installed (GPU users: see README, "GPU").
.venv/bin/python .ci/install_torch.py
.venv/bin/python -m pip install -q -e ".[$EXTRAS]"
