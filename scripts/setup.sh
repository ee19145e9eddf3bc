#!/usr/bin/env bash
# Installs everything internxtfs and its tests need on a fresh Debian/Ubuntu machine:
# FUSE 3 (kernel helper + headers for pyfuse3), restic and rsync for the end-to-end tests,
# iproute2/util-linux for the rclone interop namespace, and a virtualenv in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

# Root (a minimal machine, CI) installs packages itself; anyone else asks sudo for that step
# only, so the virtualenv stays theirs.
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi

packages=(fuse3 libfuse3-dev pkg-config python3-venv python3-dev gcc rsync restic iproute2 util-linux)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ -n "$SUDO" ] && ! command -v sudo >/dev/null; then
    echo "setup.sh: missing packages (${missing[*]}); run this as root, or install sudo" >&2
    exit 1
  fi
  $SUDO apt-get update -qq
  # Through env: sudo would drop a plain variable assignment.
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip >/dev/null
.venv/bin/pip install -q -e '.[test]'
echo "internxtfs is set up in $(pwd)/.venv"
