#!/usr/bin/env bash
# Creates the Python venv the reference scripts in this folder run in.
#   bash tests/reference/setup.sh [VENV]
# VENV: the first argument, else $VENV, else .venv-reference at the repository root (the
# default compare.sh looks in). The venv gets a .gitignore of its own, so git ignores it.
# Idempotent: an existing venv that already has these exact versions is left alone.
# torch comes from PyPI's default wheel (CUDA-enabled, ~6.8 GB venv in all), so the same
# venv also serves --device cuda on a GPU machine.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
VENV="${1:-${VENV:-$repo/.venv-reference}}"
PINS=(
  tensorflow-cpu==2.21.0   # brings keras 3.15.1 (pinned below so a resolver change can't move it)
  keras==3.15.1
  torch==2.15.0
  pillow==13.0.0
  numpy==2.4.6
)

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
[ -e "$VENV/.gitignore" ] || echo '*' > "$VENV/.gitignore"

if "$VENV/bin/python" - "${PINS[@]}" <<'EOF'
import sys
from importlib.metadata import version, PackageNotFoundError
for pin in sys.argv[1:]:
    name, want = pin.split("==")
    try:
        if version(name) != want:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
EOF
then
  echo "setup.sh: $VENV already has ${PINS[*]}" >&2
  exit 0
fi

"$VENV/bin/pip" install --quiet pip==26.3  # the pip the pins were resolved with
"$VENV/bin/pip" install --progress-bar off "${PINS[@]}"
echo "setup.sh: installed ${PINS[*]} into $VENV" >&2
