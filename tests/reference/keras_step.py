"""Times one training step of the notebook's DCGAN in Keras (the reference for `dcgan`'s step).

The models, compile calls and per-batch body are the notebook's own (Keras defaults:
Adam lr 1e-3, Glorot-uniform kernels, BatchNorm momentum 0.99 eps 1e-3). One step =
noise ~ U(-1,1) -> G.predict_on_batch -> D.train_on_batch(real, 1) ->
D.train_on_batch(fakes, 0) -> fresh noise -> DCGAN.train_on_batch(noise, 1) with D frozen
(its BatchNorm in inference mode). The real batch is random float32 of shape
(batch, 64, 64, 3), so no data is needed. Trainable parameter counts are asserted
(G 3,584,323, D 694,625). The median of --steps timed steps follows --warmup untimed ones
(the first steps trace the tf.functions). train_on_batch returns a Python float, so
each step has finished when the clock is read.

Keras 3 picks jit_compile itself ("auto"): off on a CPU-only machine, XLA on with a GPU;
the notebook's Keras 2 used no XLA. The choice is logged on stderr.

Needs no data. From the repository root, with the venv setup.sh makes (default
.venv-reference; any venv with the pinned versions will do):

    bash tests/reference/setup.sh
    .venv-reference/bin/python tests/reference/keras_step.py --batch 128 --steps 20 --warmup 3
"""
import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # hide TF's INFO banner, keep warnings

import numpy as np
import tensorflow as tf
from keras.models import Sequential
from keras.layers import (Input, Conv2D, Dropout, Dense, Flatten, Conv2DTranspose,
                          BatchNormalization, LeakyReLU, Reshape)

sys.dont_write_bytecode = True  # keep __pycache__ out of the work tree
from bench_common import core_count, emit, keep_stdout_clean, record

noise_shape = 100


def build_generator():
    # Input() replaces the notebook's input_shape= argument, which Keras 3 deprecates.
    generator = Sequential()
    generator.add(Input([noise_shape]))
    generator.add(Dense(4*4*512))
    generator.add(Reshape([4, 4, 512]))
    generator.add(Conv2DTranspose(256, kernel_size=4, strides=2, padding="same"))
    generator.add(LeakyReLU(negative_slope=0.2))
    generator.add(BatchNormalization())
    generator.add(Conv2DTranspose(128, kernel_size=4, strides=2, padding="same"))
    generator.add(LeakyReLU(negative_slope=0.2))
    generator.add(BatchNormalization())
    generator.add(Conv2DTranspose(64, kernel_size=4, strides=2, padding="same"))
    generator.add(LeakyReLU(negative_slope=0.2))
    generator.add(BatchNormalization())
    generator.add(Conv2DTranspose(3, kernel_size=4, strides=2, padding="same",
                                  activation='sigmoid'))
    return generator


def build_discriminator(dropout=0.5):
    discriminator = Sequential()
    discriminator.add(Input([64, 64, 3]))
    discriminator.add(Conv2D(32, kernel_size=4, strides=2, padding="same"))
    discriminator.add(Conv2D(64, kernel_size=4, strides=2, padding="same"))
    discriminator.add(LeakyReLU(0.2))
    discriminator.add(BatchNormalization())
    discriminator.add(Conv2D(128, kernel_size=4, strides=2, padding="same"))
    discriminator.add(LeakyReLU(0.2))
    discriminator.add(BatchNormalization())
    discriminator.add(Conv2D(256, kernel_size=4, strides=2, padding="same"))
    discriminator.add(LeakyReLU(0.2))
    discriminator.add(Flatten())
    discriminator.add(Dropout(dropout))
    discriminator.add(Dense(1, activation='sigmoid'))
    return discriminator


def trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20, help="timed steps")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    args = ap.parse_args()
    out = keep_stdout_clean()
    batch_size = args.batch

    generator, discriminator = build_generator(), build_discriminator()
    counts = (trainable_count(generator), trainable_count(discriminator))
    assert counts == (3_584_323, 694_625), f"trainable params G, D = {counts}"

    DCGAN = Sequential([generator, discriminator])
    discriminator.compile(optimizer='adam', loss='binary_crossentropy')
    discriminator.trainable = False
    DCGAN.compile(optimizer='adam', loss='binary_crossentropy')

    rng = np.random.default_rng(0)
    train_dataset = rng.random((batch_size, 64, 64, 3), dtype=np.float32)

    def step():
        # The notebook's batch body, minus the loss bookkeeping lists.
        noise = np.random.uniform(-1, 1, size=[batch_size, noise_shape])
        gen_image = generator.predict_on_batch(noise)
        train_label = np.ones(shape=(batch_size, 1))
        discriminator.trainable = True
        d_loss1 = discriminator.train_on_batch(train_dataset, train_label)
        train_label = np.zeros(shape=(batch_size, 1))
        d_loss2 = discriminator.train_on_batch(gen_image, train_label)
        noise = np.random.uniform(-1, 1, size=[batch_size, noise_shape])
        train_label = np.ones(shape=(batch_size, 1))
        discriminator.trainable = False
        g_loss = DCGAN.train_on_batch(noise, train_label)
        return d_loss1 + d_loss2, g_loss

    gpus = tf.config.list_physical_devices("GPU")
    runs = []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        d_loss, g_loss = step()
        dt = time.perf_counter() - t0
        if i >= args.warmup:
            runs.append(dt)
        print(f"step {i + 1}{' (warm-up)' if i < args.warmup else ''}: {dt:.3f} s, "
              f"D {float(d_loss):.3f} G {float(g_loss):.3f}", file=sys.stderr)
    print(f"jit_compile: D {discriminator.jit_compile}, DCGAN {DCGAN.jit_compile}; "
          f"GPUs: {len(gpus)}; TF {tf.__version__}", file=sys.stderr)

    emit(out, record("keras", "step", "cuda" if gpus else "cpu", runs, core_count(),
                     batch=batch_size))


if __name__ == "__main__":
    main()
