#!/bin/bash
# Side by side on this machine, back to back: dcgan (CPU) against the notebook's PIL loading,
# Keras and PyTorch, all at batch 128 on the notebook's networks, float32.
#   tests/reference/setup.sh            # once: a venv with the pinned Keras/PyTorch/Pillow
#   tests/reference/compare.sh DATA_DIR [RUNS] > results.jsonl
# Prints one JSON line per measurement on stdout and a table of medians on stderr.
set -euo pipefail
data=${1:?usage: compare.sh DATA_DIR [RUNS]}
runs=${2:-5}
here=$(cd "$(dirname "$0")" && pwd)
py=${VENV:-/work/bench-venv}/bin/python
dcgan=${DCGAN:-$here/../../target/release/dcgan}
out=$(mktemp)
"$dcgan" bench --data "$data" --only load,cache --warmup 1 --runs "$runs" --json >>"$out"
"$dcgan" bench --backend cpu --only step,sample --batch-size 128 --warmup 2 --runs "$runs" --json >>"$out"
"$py" "$here/pil_loading.py" --data "$data" --repeats "$runs" >>"$out"
"$py" "$here/keras_step.py" --batch 128 --steps "$runs" --warmup 2 >>"$out"
OMP_WAIT_POLICY=PASSIVE "$py" "$here/torch_step.py" --batch 128 --steps "$runs" --warmup 2 >>"$out"
cat "$out"
"$py" - "$out" <<'PY' >&2
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"{'tool':<10} {'bench':<18} {'median s':>9} {'images/s':>9}")
for r in rows:
    print(f"{r['tool']:<10} {r['bench']:<18} {r['median_s']:>9.3f} {r['images_per_sec']:>9.0f}")
PY
rm -f "$out"
