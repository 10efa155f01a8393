"""Shared by parity_torch.py and parity_keras.py: the start weights both frameworks and dcgan
compute the same way, the real faces, and the fixture file the Rust test `tests/it/parity.rs`
replays.

Start weights: every float tensor of the PyTorch state dict (names and layouts of
`torch_step.py`'s networks, which `dcgan export` also writes) is filled from its name alone,
so no weights need to be stored: element i of tensor `name` (row-major) is

    u = ((i * 2654435761 + fnv1a32(name)) mod 2^32) / 2^32          (exact in float64)
    weight: (2u - 1) * sqrt(3 / (numel / shape[0]))     bias, BatchNorm beta: 0.1 (2u - 1)
    BatchNorm gamma: 1 + 0.1 (2u - 1)                   running_mean 0, running_var 1

cast to float32 at the end. `name` is prefixed with "g." or "d.". Not an initialisation
anyone trains with: a fixed, non-degenerate start that needs no random generator.

The fixture is a safetensors file (written here by hand: no extra package) of float32
tensors; `tests/it/parity.rs` documents what it reads.
"""
import argparse
import json
import os

import numpy as np

CROP = (30, 55, 150, 175)


def arguments(doc):
    """The options both parity scripts take; returns the parser, for script-specific ones."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder of CelebA JPEGs (training faces)")
    ap.add_argument("--out", required=True, help="fixture file to write (.safetensors)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0, help="seed of the stored noise")
    return ap


def fnv1a32(text):
    h = 0x811C9DC5
    for byte in text.encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


# About one float32 rounding of a start weight (2^-24): how far `nudge` moves each one.
NUDGE = 6e-8
# How many nudged float64 runs each script makes (patterns 0..NUDGED-1).
NUDGED = 4
# Runs with D's dropout on (float32, mask seeds 0..DROPOUT_RUNS-1), and its rate.
DROPOUT_RUNS = 32
DROPOUT = 0.5


def start_value(prefix, name, shape, nudge=None):
    """The start value of one state-dict tensor, as the module docstring defines it. With
    `nudge` (a pattern number), each value is moved by NUDGE of itself up or down, the signs
    drawn from the pattern and the name, and kept in float64: a float64 run started from it
    shows how far a float32-sized change of the start moves the framework's own answer."""
    n = int(np.prod(shape))
    i = np.arange(n, dtype=np.uint64)
    u = ((i * np.uint64(2654435761) + np.uint64(fnv1a32(prefix + name))) % np.uint64(2**32))
    u = u.astype(np.float64) / 2.0**32
    signed = 2.0 * u - 1.0
    if name.endswith("running_mean"):
        v = np.zeros(n)
    elif name.endswith("running_var"):
        v = np.ones(n)
    elif name.endswith(".bias"):
        v = 0.1 * signed
    elif len(shape) == 1:  # BatchNorm weight (gamma)
        v = 1.0 + 0.1 * signed
    else:
        v = signed * np.sqrt(3.0 / (n / shape[0]))
    v = v.astype(np.float32).reshape(shape)
    if nudge is None:
        return v
    sign = np.random.default_rng([nudge, fnv1a32(prefix + name)]).choice([-1.0, 1.0], size=shape)
    return v.astype(np.float64) * (1.0 + NUDGE * sign)


def load_faces(folder, count):
    """The first `count` JPEGs of `folder` in sorted order, cropped and resized with the
    notebook's own PIL code; uint8, shape (count, 64, 64, 3)."""
    from PIL import Image
    names = sorted(f for f in os.listdir(folder) if ".jpg" in f)[:count]
    if len(names) < count:
        raise SystemExit(f"{folder}: {len(names)} JPEGs, need {count}")
    return np.stack([np.array(Image.open(os.path.join(folder, f)).crop(CROP).resize((64, 64)))
                     for f in names])


def notebook_normalise(faces):
    """The notebook's per-image (x - min) / (255 - min), float64 then float32."""
    out = []
    for x in faces.astype(np.float64):
        out.append((x - x.min()) / (255 - x.min()))
    return np.stack(out).astype(np.float32)


def symmetric_normalise(faces):
    """[-1, 1], as dcgan's "symmetric" normalisation: x / 127.5 - 1."""
    return (faces.astype(np.float32) * np.float32(1 / 127.5) - np.float32(1.0)).astype(np.float32)


SAMPLES = 512


def sampled(values):
    """At most SAMPLES entries of a flattened tensor, every ceil(n / SAMPLES)-th from the
    first: a weight tensor in a few hundred bytes."""
    flat = np.asarray(values, dtype=np.float32).reshape(-1)
    return flat[::-(-flat.size // SAMPLES)].copy()


def write_safetensors(path, tensors, metadata):
    """tensors: {name: float32 array}. The safetensors layout: u64 header length, JSON header,
    then the raw little-endian data in header order."""
    header, blobs, offset = {}, [], 0
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr, dtype="<f4")
        header[name] = {"dtype": "F32", "shape": list(arr.shape),
                        "data_offsets": [offset, offset + arr.nbytes]}
        blobs.append(arr.tobytes())
        offset += arr.nbytes
    header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for b in blobs:
            f.write(b)


def final_difference(run, exact):
    """The largest difference between two runs' final weights, as tests/it/parity.rs measures
    it: per tensor, on the sampled values, relative to the tensor's largest magnitude."""
    worst = 0.0
    for ours, theirs in ((run[1], exact[1]), (run[2], exact[2])):
        for name, value in theirs.items():
            e, x = sampled(value), sampled(ours[name])
            worst = max(worst, float(np.max(np.abs(x - e)) / max(np.max(np.abs(e)), 1e-6)))
    return worst


def write_fixture(path, faces, runs, noise_d, noise_g, metadata):
    """Writes the fixture `path` and its faces `path` with .png for .safetensors.

    runs: {"float64": (losses, final_g, final_d, after1_g, after1_d), "float32": (...)}, the
    same steps computed in each precision (after1: the state dicts after the first step), and
    optionally "nudged": a list of float64 runs (the same tuples) from nudged starts
    (`start_value`), and "dropout": a list of the losses of float32 runs with D's dropout at
    DROPOUT, one per mask seed.
    Stored: `losses` [steps, 3] (D on the real batch, D on the fakes, G) of the float64 run,
    `losses32` of the float32 run, `losses64n` [patterns, steps, 3] of the nudged ones and
    `final64n_difference` [patterns], how far each one's final weights are from the float64
    run's (`final_difference`), `losses_dropout` [seeds, steps, 3]; `noise_d`, `noise_g` [steps, batch, 100]; for every float
    tensor of the state dicts, `final.g.NAME` (sampled, float64 run), `final32.g.NAME`
    (sampled, float32 run) and `after1.g.NAME` (sampled, float64 run, after step 1), likewise
    `d.`.
    The faces (uint8, as cropped and resized by PIL) go in a PNG of the faces stacked top to
    bottom, lossless, in the order the steps use them."""
    from PIL import Image
    png = path[: -len(".safetensors")] + ".png"
    Image.fromarray(np.concatenate(list(faces), axis=0)).save(png)
    out = {"noise_d": np.asarray(noise_d, dtype=np.float32),
           "noise_g": np.asarray(noise_g, dtype=np.float32)}
    if runs.get("dropout"):
        out["losses_dropout"] = np.asarray(runs["dropout"], dtype=np.float32)
    if runs.get("nudged"):
        out["losses64n"] = np.asarray([r[0] for r in runs["nudged"]], dtype=np.float32)
        out["final64n_difference"] = np.asarray(
            [final_difference(r, runs["float64"]) for r in runs["nudged"]], dtype=np.float32)
    for run, key in (("float64", ""), ("float32", "32")):
        losses, final_g, final_d, after1_g, after1_d = runs[run]
        out[f"losses{key}"] = np.asarray(losses, dtype=np.float32)
        for prefix, state, first in (("g.", final_g, after1_g), ("d.", final_d, after1_d)):
            for name, value in state.items():
                out[f"final{key}.{prefix}{name}"] = sampled(value)
                if run == "float64":
                    out[f"after1.{prefix}{name}"] = sampled(first[name])
    write_safetensors(path, out, metadata)
    print(f"wrote {path} and {png}", file=__import__("sys").stderr)
