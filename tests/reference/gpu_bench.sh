#!/bin/bash
# On a machine with an NVIDIA GPU: dcgan bench (WGPU) and PyTorch CUDA at batch 128, then
# three epochs of 50,000 images (FACES_DIR's JPEGs hard-linked 34 times: 1,500 faces give
# 51,000 files) with GPU memory sampled every second.
#   tests/reference/gpu_bench.sh DCGAN_BINARY FACES_DIR
#   e.g. tests/reference/gpu_bench.sh target/release/dcgan CELEBA_SAMPLE_DIR
# Environment (all optional):
#   OUT          where the results go (default /tmp/gpu-bench): gpu.txt, mem.log, bench.jsonl,
#                the last preview grid and the last three rows of losses.jsonl
#   WORK         scratch folder for the linked images (WORK/d) and the run (WORK/run);
#                default: a new temporary folder. Files are copied where they cannot be
#                hard-linked (another file system).
#   VENV         a venv with torch (setup.sh makes one); default: python3 on PATH
#   VULKAN_DEBS  a folder of .deb files (the Vulkan loader) to unpack into / first, for a
#                machine without the loader and without package access; needs root
#   NVIDIA_ICD   NVIDIA's Vulkan driver manifest to use when none is installed in the usual
#                places (default /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json; used
#                only if the file exists)
set -u
here=$(cd "$(dirname "$0")" && pwd)
usage="usage: gpu_bench.sh DCGAN_BINARY FACES_DIR"
B=${1:?$usage}
faces=${2:?$usage}
if [ -n "${VULKAN_DEBS:-}" ]; then
  for f in "$VULKAN_DEBS"/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
icd=${NVIDIA_ICD:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
if ! ls /usr/share/vulkan/icd.d/*nvidia* /etc/vulkan/icd.d/*nvidia* >/dev/null 2>&1 && [ -f "$icd" ]; then
  export VK_DRIVER_FILES=$icd
fi
py=python3
[ -n "${VENV:-}" ] && py=$VENV/bin/python
OUT=${OUT:-/tmp/gpu-bench}
WORK=${WORK:-$(mktemp -d)}
mkdir -p "$OUT" "$WORK/d"
echo "results in $OUT, scratch in $WORK"
nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv | tee "$OUT/gpu.txt"
nvidia-smi --query-gpu=timestamp,memory.used --format=csv,noheader -lms 1000 > "$OUT/mem.log" &
mem_pid=$!
echo "=== dcgan bench wgpu"
timeout 120 "$B" bench --backend wgpu --only step,sample --batch-size 128 --warmup 3 --runs 10 --json > "$OUT/bench.jsonl"
echo "=== torch cuda"
timeout 60 "$py" "$here/torch_step.py" --device cuda --batch 128 --steps 10 --warmup 3 >> "$OUT/bench.jsonl"
cat "$OUT/bench.jsonl"
echo "=== 50k epochs"
for r in $(seq 10 43); do
  for f in "$faces"/*.jpg; do
    dest="$WORK/d/$r-$(basename "$f")"
    ln "$f" "$dest" 2>/dev/null || cp "$f" "$dest"
  done
done
ls "$WORK/d" | wc -l
timeout -s INT 170 "$B" train --data "$WORK/d" --limit 50000 --batch-size 128 --epochs 3 --backend wgpu --out "$WORK/run" 2>&1 | grep -v "^  epoch" | tail -12
kill "$mem_pid"
cp "$WORK/run/samples/$(ls "$WORK/run/samples" | tail -1)" "$OUT/" 2>/dev/null
tail -3 "$WORK/run/losses.jsonl" > "$OUT/losses-tail.jsonl"
