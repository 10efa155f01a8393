"""Checks a dcgan run's TensorBoard event files against the run's own logs and samples.

The events are read with TensorBoard's own EventAccumulator, so a pass means TensorBoard
shows exactly what the run logged:
  losses.jsonl   each row's values under loss/d, loss/g, loss/d_real, loss/d_fake, d/real,
                 d/fake and speed/images_per_sec, one event per tag at the row's step;
  metrics.jsonl  (if present) swd/mean, swd/ema_mean (rows that have it), swd/level_<size>;
  samples/       one `preview` image per epoch, at the epoch's last step, whose pixels equal
                 samples/epoch_NNNN.png.
Values compare as float32, exactly (the logs print the f32 shortest-roundtrip; null = NaN).
Each tag's steps must equal the log's steps: none missing, none twice, none extra.

    python3 tests/reference/tensorboard_check.py RUN_DIR [--expect-epochs N]

Needs tensorboard, numpy and Pillow. Exits 1 with a message on the first mismatch.
"""
import argparse
import io
import json
import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator as ea

LOSS_TAGS = {
    "loss/d": "d_loss",
    "loss/g": "g_loss",
    "loss/d_real": "d_loss_real",
    "loss/d_fake": "d_loss_fake",
    "d/real": "d_real_mean",
    "d/fake": "d_fake_mean",
    "speed/images_per_sec": "images_per_sec",
}


def fail(message):
    print(f"tensorboard_check: FAIL: {message}")
    sys.exit(1)


def read_jsonl(path):
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    twice = [s for s, n in Counter(r["step"] for r in rows).items() if n > 1]
    if twice:
        fail(f"{path.name} has step {twice[0]} more than once")
    return rows


def expected_scalars(run):
    """{tag: {step: json value}} from losses.jsonl and metrics.jsonl."""
    losses = read_jsonl(run / "losses.jsonl")
    if not losses:
        fail("losses.jsonl has no rows")
    want = {tag: {r["step"]: r[key] for r in losses} for tag, key in LOSS_TAGS.items()}
    metrics = run / "metrics.jsonl"
    for row in read_jsonl(metrics) if metrics.exists() else []:
        step = row["step"]
        want.setdefault("swd/mean", {})[step] = row["swd_mean"]
        if row.get("ema_swd_mean") is not None:
            want.setdefault("swd/ema_mean", {})[step] = row["ema_swd_mean"]
        for size, value in row["swd_levels"]:
            want.setdefault(f"swd/level_{size}", {})[step] = value
    return losses, want


def same_f32(logged, event_value):
    if logged is None:  # serde_json writes NaN as null
        return math.isnan(event_value)
    return float(np.float32(logged)) == event_value  # both float64: an exact comparison


def check_scalars(acc, want):
    have = set(acc.Tags()["scalars"])
    if have - want.keys():
        fail(f"unexpected scalar tags {sorted(have - want.keys())}")
    for tag, by_step in want.items():
        if tag not in have:
            fail(f"no scalar tag {tag!r} in the event files")
        events = acc.Scalars(tag)
        steps = Counter(e.step for e in events)
        twice = sorted(s for s, n in steps.items() if n > 1)
        if twice:
            fail(f"{tag}: step {twice[0]} has {steps[twice[0]]} events")
        if steps.keys() != by_step.keys():
            missing = sorted(by_step.keys() - steps.keys())
            extra = sorted(steps.keys() - by_step.keys())
            fail(f"{tag}: steps missing {missing[:5]}, extra {extra[:5]} (vs the logs)")
        for e in events:
            if not same_f32(by_step[e.step], e.value):
                logged = by_step[e.step]
                as_f32 = None if logged is None else float(np.float32(logged))
                fail(f"{tag} at step {e.step}: event {e.value!r}, log {logged!r} ({as_f32!r})")
    return sum(len(by_step) for by_step in want.values())


def check_previews(acc, run, losses, expect_epochs):
    last_step = {r["epoch"]: r["step"] for r in sorted(losses, key=lambda r: r["step"])}
    epoch_at = {step: epoch for epoch, step in last_step.items()}
    images = acc.Images("preview") if "preview" in acc.Tags()["images"] else []
    if expect_epochs is not None and len(images) != expect_epochs:
        fail(f"{len(images)} preview images, expected {expect_epochs}")
    steps = [im.step for im in images]
    if sorted(steps) != sorted(last_step.values()):
        fail(f"preview steps {steps}, expected each epoch's last step {sorted(epoch_at)}")
    for im in images:
        sample = run / "samples" / f"epoch_{epoch_at[im.step]:04d}.png"
        if not sample.exists():
            fail(f"no {sample} for the preview at step {im.step}")
        got = np.asarray(Image.open(io.BytesIO(im.encoded_image_string)).convert("RGB"))
        if (im.width, im.height) != (got.shape[1], got.shape[0]):
            fail(f"preview at step {im.step} says {im.width}x{im.height}, PNG is {got.shape}")
        expected = np.asarray(Image.open(sample).convert("RGB"))
        if got.shape != expected.shape or not np.array_equal(got, expected):
            fail(f"preview at step {im.step} differs from {sample}")
    return len(images)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--expect-epochs", type=int, help="number of preview images")
    args = parser.parse_args()
    losses, want = expected_scalars(args.run_dir)
    acc = ea.EventAccumulator(
        str(args.run_dir), size_guidance={ea.SCALARS: 0, ea.IMAGES: 0}  # 0 = keep all
    )
    acc.Reload()
    scalars = check_scalars(acc, want)
    images = check_previews(acc, args.run_dir, losses, args.expect_epochs)
    print(f"tensorboard_check: {scalars} scalars, {images} images ok")


if __name__ == "__main__":
    main()
