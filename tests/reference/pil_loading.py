"""Times the notebook's image-loading cell (the Python/PIL reference for `dcgan`'s loader).

Two benchmarks, each one JSON line on stdout (schema in README.md):
  load-no-normalise  the notebook's list comprehension only: PIL open, crop (30,55,150,175),
                     resize((64,64)) with PIL's default filter (bicubic), np.array per image;
  load               the whole cell: the above, then the per-image
                     (x - x.min()) / (255 - x.min()) loop (float64) and np.array(images),
                     giving an (N, 64, 64, 3) float64 array as the notebook does.
Single-threaded, as the notebook. Files are listed with os.listdir, keeping names that
contain '.jpg', first N kept, as the notebook does. One untimed warm-up pass
(load-no-normalise) fills the OS page cache first, so the timed passes measure decoding,
not the disk. The no-normalise repeats run before the full ones, so each line's
peak_rss_mb (ru_maxrss, which only grows) is that benchmark's own peak.

--data is required: a folder that directly holds CelebA JPEGs (not searched recursively,
as the notebook's os.listdir). From the repository root, with the venv setup.sh makes
(default .venv-reference):

    bash tests/reference/setup.sh
    .venv-reference/bin/python tests/reference/pil_loading.py \
        --data CELEBA_DIR --limit 1000 --repeats 3
"""
import argparse
import os
import sys
import time

import numpy as np
from PIL import Image

sys.dont_write_bytecode = True  # keep __pycache__ out of the work tree
from bench_common import emit, keep_stdout_clean, peak_rss_mb, record

CROP = (30, 55, 150, 175)


def open_crop_resize(paths):
    return [np.array((Image.open(path).crop(CROP)).resize((64, 64))) for path in paths]


def notebook_cell(paths):
    images = open_crop_resize(paths)
    for i in range(len(images)):
        images[i] = ((images[i] - images[i].min()) / (255 - images[i].min()))
    return np.array(images)


def time_passes(fn, paths, repeats):
    runs = []
    for r in range(repeats):
        t0 = time.perf_counter()
        out = fn(paths)
        runs.append(time.perf_counter() - t0)
        print(f"{fn.__name__} pass {r + 1}/{repeats}: {runs[-1]:.3f} s, "
              f"{out.shape if hasattr(out, 'shape') else len(out)}", file=sys.stderr)
        del out
    return runs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder of CelebA JPEGs")
    ap.add_argument("--limit", type=int, default=50000, help="first N files (notebook: 50000)")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes per benchmark")
    args = ap.parse_args()
    out = keep_stdout_clean()

    paths = [os.path.join(args.data, p) for p in os.listdir(args.data) if '.jpg' in p]
    paths = paths[:args.limit]
    if not paths:
        sys.exit(f"no .jpg files in {args.data}")

    open_crop_resize(paths)  # warm-up: page cache
    plain = time_passes(open_crop_resize, paths, args.repeats)
    plain_rss = peak_rss_mb()
    full = time_passes(notebook_cell, paths, args.repeats)

    emit(out, record("pil", "load-no-normalise", "cpu", plain, 1,
                     images=len(paths), rss_mb=plain_rss))
    emit(out, record("pil", "load", "cpu", full, 1, images=len(paths)))


if __name__ == "__main__":
    main()
