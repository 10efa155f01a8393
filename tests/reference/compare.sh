#!/bin/bash
# Side by side on this machine, back to back: dcgan (CPU) against the notebook's PIL loading,
# Keras and PyTorch, all at batch 128 on the notebook's networks, float32.
#   bash tests/reference/setup.sh                             # once: a venv with the pinned Keras/PyTorch/Pillow
#   tests/reference/compare.sh DATA_DIR [RUNS] > results.jsonl
# DATA_DIR: a folder that directly holds CelebA JPEGs (e.g. a 5,000-image sample); RUNS: timed
# runs per measurement (default 5).
# Environment: VENV, the venv setup.sh made (default: .venv-reference at the repository root);
# DCGAN, the dcgan binary (default: target/release/dcgan; build it with cargo build --release).
# Prints one JSON line per measurement on stdout and, on stderr, a table of each one's median
# and spread (the fastest and slowest of its timed runs, as a percentage of the median).
set -euo pipefail
usage="usage: compare.sh DATA_DIR [RUNS]"
data=${1:?$usage}
runs=${2:-5}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
py=${VENV:-$repo/.venv-reference}/bin/python
dcgan=${DCGAN:-$repo/target/release/dcgan}
[ -d "$data" ] || { echo "compare.sh: $data is not a folder; $usage" >&2; exit 2; }
[ -x "$py" ] || { echo "compare.sh: no Python at $py: run bash tests/reference/setup.sh first, or set VENV" >&2; exit 2; }
[ -x "$dcgan" ] || { echo "compare.sh: no dcgan binary at $dcgan: run cargo build --release, or set DCGAN" >&2; exit 2; }
out=$(mktemp)
"$dcgan" bench --data "$data" --only load,cache --warmup 1 --runs "$runs" --json >>"$out"
"$dcgan" bench --backend cpu --preset notebook --only step,sample --batch-size 128 --warmup 2 --runs "$runs" --json >>"$out"
"$py" "$here/pil_loading.py" --data "$data" --repeats "$runs" >>"$out"
"$py" "$here/keras_step.py" --batch 128 --steps "$runs" --warmup 2 >>"$out"
OMP_WAIT_POLICY=PASSIVE "$py" "$here/torch_step.py" --batch 128 --steps "$runs" --warmup 2 >>"$out"
# torch.compile: the first warm-up step compiles (minutes on 2 cores), the second settles.
OMP_WAIT_POLICY=PASSIVE "$py" "$here/torch_step.py" --compile --batch 128 --steps "$runs" --warmup 3 >>"$out"
cat "$out"
"$py" - "$out" <<'PY' >&2
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"{'tool':<17} {'bench':<18} {'median s':>9} {'spread':>15} {'images/s':>9}")
for r in rows:
    m = r['median_s']
    lo, hi = (min(r['runs']) - m) / m * 100, (max(r['runs']) - m) / m * 100
    print(f"{r['tool']:<17} {r['bench']:<18} {m:>9.3f} {lo:>+6.1f}%/{hi:>+6.1f}% "
          f"{r['images_per_sec']:>9.0f}")
PY
rm -f "$out"
