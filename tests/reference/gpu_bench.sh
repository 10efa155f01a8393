#!/bin/bash
# On a GPU machine: tests/reference/gpu_bench.sh target/release/dcgan FACES_DIR
# dcgan bench (wgpu) and PyTorch CUDA at batch 128, then epochs of
# 50,000 images (1,500 real faces hard-linked 34 times) with GPU memory sampled.
set -u
# The device tool's machines need the Vulkan loader unpacked from carried .deb files.
[ -d .gl ] && { for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig; }
export XDG_RUNTIME_DIR=/tmp
if ! ls /usr/share/vulkan/icd.d/*nvidia* /etc/vulkan/icd.d/*nvidia* >/dev/null 2>&1; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
B=${1:?usage: gpu_bench.sh DCGAN_BINARY FACES_DIR}
faces=${2:?usage: gpu_bench.sh DCGAN_BINARY FACES_DIR}
OUT=${OUT:-/tmp/gpu-bench}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv | tee $OUT/gpu.txt
nvidia-smi --query-gpu=timestamp,memory.used --format=csv,noheader -lms 1000 > $OUT/mem.log &
echo "=== dcgan bench wgpu"
timeout 120 $B bench --backend wgpu --only step,sample --batch-size 128 --warmup 3 --runs 10 --json > $OUT/bench.jsonl
echo "=== torch cuda"
timeout 60 python3 tests/reference/torch_step.py --device cuda --batch 128 --steps 10 --warmup 3 >> $OUT/bench.jsonl
cat $OUT/bench.jsonl
echo "=== 50k epochs"
mkdir -p /tmp/d
for r in $(seq 10 43); do for f in $faces/*.jpg; do ln "$f" /tmp/d/$r-$(basename "$f"); done; done
ls /tmp/d | wc -l
timeout -s INT 170 $B train --data /tmp/d --limit 50000 --batch-size 128 --epochs 3 --backend wgpu --out /tmp/run 2>&1 | grep -v "^  epoch" | tail -12
kill %1
cp /tmp/run/samples/$(ls /tmp/run/samples | tail -1) $OUT/ 2>/dev/null
tail -3 /tmp/run/losses.jsonl > $OUT/losses-tail.jsonl
