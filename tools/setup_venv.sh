#!/usr/bin/env bash
# Build the project virtualenv with the CI pins. Uses uv when it can (≈30 s), pip otherwise.
set -euo pipefail
VENV="${1:-.venv}"
HERE="$(cd "$(dirname "$0")/.." && pwd)"
cd "$HERE"
C=requirements/constraints.txt
INDEX_ARGS=()
for d in /opt/pypi/simple /opt/pypi-more/simple; do
  [[ -d $d ]] && INDEX_ARGS+=(--extra-index-url "file://$d")
done
[[ -d /opt/wheels ]] && INDEX_ARGS+=(--find-links /opt/wheels)

if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install -q "uv==0.13.9" || true
fi
if command -v uv >/dev/null 2>&1; then
  [[ -x $VENV/bin/python ]] || uv venv -q --python "$(command -v python3)" "$VENV"
  PIP=(uv pip install -q --compile-bytecode --python "$VENV/bin/python" --index-strategy unsafe-best-match "${INDEX_ARGS[@]}")
else
  [[ -x $VENV/bin/python ]] || python3 -m venv "$VENV"
  PIP=("$VENV/bin/python" -m pip install -q)
fi
CARGS=()
[[ -f $C ]] && CARGS=(-c "$C")
"${PIP[@]}" "${CARGS[@]}" -r requirements/torch.txt
"${PIP[@]}" "${CARGS[@]}" -r requirements/core.txt -r requirements/eval.txt -r requirements/dev.txt
"${PIP[@]}" "${CARGS[@]}" --no-deps -r requirements/toolkits.txt
"${PIP[@]}" "${CARGS[@]}" --no-deps -e .
echo "venv ready: $VENV"
