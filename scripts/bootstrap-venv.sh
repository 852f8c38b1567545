#!/usr/bin/env bash
# Create .venv with Python >= 3.11. On a fresh Debian, python3 lacks the venv module: install it with apt.
set -euo pipefail
python="${1:-}"
if [ -z "$python" ]; then
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then python=$candidate; break; fi
  done
fi
[ -n "$python" ] || { echo "Python 3.11 or newer is required (apt-get install python3)." >&2; exit 1; }
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "$python is older than 3.11." >&2; exit 1; }
if ! "$python" -m venv --help >/dev/null 2>&1 || ! "$python" -c 'import ensurepip' >/dev/null 2>&1; then
  as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
  minor=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python${minor}-venv" || \
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
fi
"$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel
