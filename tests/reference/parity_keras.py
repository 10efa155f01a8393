"""Runs N steps of the notebook's own Keras loop and writes every loss and the final weights,
for dcgan's `--preset notebook` to replay step for step (`tests/it/parity.rs`).

Networks, compile calls and loop body: keras_step.py's, which are the notebook's (Keras
defaults: Adam lr 1e-3, beta1 0.9, beta2 0.999, epsilon 1e-7; BatchNorm momentum 0.99,
epsilon 1e-3; sigmoid output; binary cross-entropy), with the start weights of
parity_common.py converted to Keras's layouts (below). Faces: the first --batch x --steps
JPEGs of --data with the notebook's PIL code and its per-image min-normalisation. Noise:
U(-1, 1) from a seeded numpy generator, two draws a step as the notebook makes them, stored.
Each step:
  fakes = G.predict_on_batch(noise_d)            (inference mode)
  D.trainable = True;  D.train_on_batch(real, 1);  D.train_on_batch(fakes, 0)
  D.trainable = False; DCGAN.train_on_batch(noise_g, 1)
Keras 3 runs a layer whose `trainable` is False in inference mode, so D's BatchNorm uses its
moving statistics in the last call: dcgan's `"frozen_bn": "running"`.
--dropout defaults to 0, because dropout masks cannot agree across frameworks. Runs in
float64 and in float32 (keras.config.set_floatx), as parity_torch.py does, and
parity_common.NUDGED more times in float64 from starts nudged by a float32 rounding (parity_common.start_value): this
loop's answer jumps when a value crosses a LeakyReLU kink or an Adam step changes sign, so
past the first steps a change as small as float32 rounding can move it by far more than that.

Layouts, PyTorch (the fixture's names) -> Keras, the layer index being the same in both
Sequential models:
  Linear weight [out, in] -> Dense kernel [in, out], transposed; G's first Dense and D's
    last also reorder their 4x4xC side, because Keras reshapes and flattens channels-last
    (index (h*4 + w)*C + c) where PyTorch is channels-first (c*16 + h*4 + w);
  Conv2d [out, in, 4, 4] -> Conv2D kernel [4, 4, in, out];
  ConvTranspose2d [in, out, 4, 4] -> Conv2DTranspose kernel [4, 4, out, in] (no spatial
    flip: both are the adjoint of the same correlation; "same" padding with kernel 4 and
    stride 2 pads one pixel each side, as padding=1);
  BatchNorm weight, bias, running_mean, running_var -> gamma, beta, moving_mean,
    moving_variance.

    .venv-reference/bin/python tests/reference/parity_keras.py --data FACES_DIR \\
        --out tests/data/parity/keras_notebook.safetensors [--batch 4] [--steps 5]
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

import numpy as np

sys.dont_write_bytecode = True
import parity_common as pc

NOISE = 100


def to_keras(kind, name, w, channels_last_side=None):
    """A PyTorch-layout tensor in Keras's layout (see the module docstring)."""
    if kind == "dense" and name == "weight":
        w = w.T  # [in, out]
        if channels_last_side == "out":  # G's Dense: out index c*16+hw -> hw*C+c
            c = w.shape[1] // 16
            w = w.reshape(w.shape[0], c, 16).transpose(0, 2, 1).reshape(w.shape[0], -1)
        if channels_last_side == "in":  # D's Dense: in index c*16+hw -> hw*C+c
            c = w.shape[0] // 16
            w = w.reshape(c, 16, w.shape[1]).transpose(1, 0, 2).reshape(-1, w.shape[1])
        return w
    if kind == "dense" and name == "bias" and channels_last_side == "out":
        return w.reshape(-1, 16).T.reshape(-1)
    if kind in ("conv", "deconv") and name == "weight":
        return w.transpose(2, 3, 1, 0)
    return w


def to_torch(kind, name, w, channels_last_side=None):
    """The inverse of to_keras."""
    if kind == "dense" and name == "weight":
        if channels_last_side == "out":
            c = w.shape[1] // 16
            w = w.reshape(w.shape[0], 16, c).transpose(0, 2, 1).reshape(w.shape[0], -1)
        if channels_last_side == "in":
            c = w.shape[0] // 16
            w = w.reshape(16, c, w.shape[1]).transpose(1, 0, 2).reshape(-1, w.shape[1])
        return w.T
    if kind == "dense" and name == "bias" and channels_last_side == "out":
        return w.reshape(16, -1).T.reshape(-1)
    if kind in ("conv", "deconv") and name == "weight":
        return w.transpose(3, 2, 0, 1)
    return w


BN_NAMES = ["weight", "bias", "running_mean", "running_var"]  # gamma, beta, moving mean, var


def layers_of(model, side):
    """(index, layer, kind, channels_last_side) of each layer with weights."""
    from keras.layers import BatchNormalization, Conv2D, Conv2DTranspose, Dense
    out = []
    for i, layer in enumerate(model.layers):
        if isinstance(layer, Dense):
            out.append((i, layer, "dense", side))
        elif isinstance(layer, Conv2DTranspose):
            out.append((i, layer, "deconv", None))
        elif isinstance(layer, Conv2D):
            out.append((i, layer, "conv", None))
        elif isinstance(layer, BatchNormalization):
            out.append((i, layer, "bn", None))
    return out


def torch_shape(kind, name, keras_shape):
    if kind == "bn" or name == "bias":
        return tuple(keras_shape)
    if kind == "dense":
        return (keras_shape[1], keras_shape[0])
    return (keras_shape[3], keras_shape[2], 4, 4)


def load_start(model, prefix, side, nudge):
    for i, layer, kind, cl in layers_of(model, side):
        names = BN_NAMES if kind == "bn" else ["weight", "bias"]
        values = []
        for name, var in zip(names, layer.get_weights()):
            shape = torch_shape(kind, name, var.shape)
            start = pc.start_value(prefix, f"{i}.{name}", shape, nudge)
            values.append(to_keras(kind, name, start, cl).astype(var.dtype))
        layer.set_weights(values)


def state_dict(model, side):
    out = {}
    for i, layer, kind, cl in layers_of(model, side):
        names = BN_NAMES if kind == "bn" else ["weight", "bias"]
        for name, var in zip(names, layer.get_weights()):
            out[f"{i}.{name}"] = to_torch(kind, name, np.asarray(var), cl).astype(np.float32)
    return out


def train(args, floatx, real, noise_d, noise_g, nudge=None, dropout=None, mask_seed=None):
    import keras
    keras.config.set_floatx(floatx)
    # dropout masks, if any
    keras.utils.set_random_seed(args.seed if mask_seed is None else mask_seed)
    rate = args.dropout if dropout is None else dropout
    from keras.models import Sequential
    from keras_step import build_discriminator, build_generator
    generator, discriminator = build_generator(), build_discriminator(dropout=rate)
    load_start(generator, "g.", "out", nudge)
    load_start(discriminator, "d.", "in", nudge)
    DCGAN = Sequential([generator, discriminator])
    discriminator.compile(optimizer='adam', loss='binary_crossentropy')
    discriminator.trainable = False
    DCGAN.compile(optimizer='adam', loss='binary_crossentropy')

    b, losses, after1 = args.batch, [], None
    ones, zeros = np.ones((b, 1), dtype=floatx), np.zeros((b, 1), dtype=floatx)
    for s in range(args.steps):
        gen_image = generator.predict_on_batch(noise_d[s].astype(floatx))
        discriminator.trainable = True
        d1 = discriminator.train_on_batch(real[s].astype(floatx), ones)
        d2 = discriminator.train_on_batch(gen_image, zeros)
        discriminator.trainable = False
        g = DCGAN.train_on_batch(noise_g[s].astype(floatx), ones)
        losses.append([float(d1), float(d2), float(g)])
        print(f"{floatx} step {s + 1}: D real {losses[-1][0]:.6f} D fake {losses[-1][1]:.6f} "
              f"G {losses[-1][2]:.6f}", file=sys.stderr)
        if s == 0:
            after1 = state_dict(generator, "out"), state_dict(discriminator, "in")
    return (losses, state_dict(generator, "out"), state_dict(discriminator, "in")) + after1


def main():
    ap = pc.arguments(__doc__)
    args = ap.parse_args()
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(1)  # one summation order
    tf.config.threading.set_inter_op_parallelism_threads(1)
    b, steps = args.batch, args.steps

    faces = pc.load_faces(args.data, b * steps)
    real = pc.notebook_normalise(faces).reshape(steps, b, 64, 64, 3)  # NHWC, as Keras
    rng = np.random.default_rng(args.seed)
    noise = rng.uniform(-1, 1, size=(steps, 2, b, NOISE)).astype(np.float32)
    noise_d, noise_g = noise[:, 0], noise[:, 1]
    runs = {x: train(args, x, real, noise_d, noise_g) for x in ("float64", "float32")}
    runs["nudged"] = [train(args, "float64", real, noise_d, noise_g, nudge=p)
                      for p in range(pc.NUDGED)]
    runs["dropout"] = [train(args, "float32", real, noise_d, noise_g, dropout=pc.DROPOUT,
                             mask_seed=s)[0] for s in range(pc.DROPOUT_RUNS)]
    pc.write_fixture(args.out, faces, runs, noise_d, noise_g, {
        "framework": f"keras {__import__('keras').__version__}, tensorflow {tf.__version__}",
        "preset": "notebook", "loop": "notebook", "frozen_bn": "running", "batch": b,
        "steps": steps, "dropout": args.dropout})


if __name__ == "__main__":
    main()
