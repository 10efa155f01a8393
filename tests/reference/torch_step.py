"""Times one training step of the notebook's DCGAN in PyTorch (eager, or torch.compile).

The same models as keras_step.py, translated: Keras "same" padding with kernel 4 stride 2
is padding=1 in both Conv2d and ConvTranspose2d; BatchNorm momentum 0.01 (Keras 0.99) and
eps 1e-3; Glorot-uniform weights and zero biases; Adam lr 1e-3, betas (0.9, 0.999),
eps 1e-7 (Keras defaults); sigmoid outputs with BCELoss. Channels-first, so Dense ->
reshape and Flatten order differ from Keras; the counts and the work do not. Trainable
parameter counts are asserted equal to Keras's (G 3,584,323, D 694,625). float32.

One step, as the notebook's loop:
  1. noise ~ U(-1,1); fakes = G(noise) with G in eval mode (BatchNorm moving stats), no grad;
  2. D update on the real batch, label 1;   3. D update on the fakes, label 0;
  4. fresh noise; G update through D with label 1, D frozen: no grads for D's weights and
     its BatchNorm in eval mode, but its Dropout still active (Keras freezes only BN).
The real batch is random float32 (batch, 3, 64, 64). Losses are read with .item() each
step, as Keras's train_on_batch returns floats; on cuda the clock is also read only after
torch.cuda.synchronize(). Median of --steps timed steps after --warmup untimed ones
(with --compile, the warm-up steps carry the compilation: give it a few).

Threads: torch.set_num_threads(number of usable cores). OMP_WAIT_POLICY=PASSIVE is set
before torch is imported unless already set: OpenMP's default busy-waiting spins on
cores that a shared or 2-core machine needs for other work, and skews timings there.

Needs no data. From the repository root, with the venv setup.sh makes (default
.venv-reference; on a GPU machine any Python with torch and CUDA will do):

    bash tests/reference/setup.sh
    .venv-reference/bin/python tests/reference/torch_step.py --steps 20 --warmup 3
    .venv-reference/bin/python tests/reference/torch_step.py --compile --warmup 5
    .venv-reference/bin/python tests/reference/torch_step.py --device cuda
"""
import argparse
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # must precede the torch import

import torch
from torch import nn

sys.dont_write_bytecode = True  # keep __pycache__ out of the work tree
from bench_common import core_count, emit, keep_stdout_clean, record

NOISE = 100


def generator(output=nn.Sigmoid, eps=1e-3, momentum=0.01):
    """The notebook's G; the defaults are Keras's BatchNorm and the notebook's sigmoid (the
    dcgan preset: output=nn.Tanh, eps=1e-5, momentum=0.1)."""
    def up(cin, cout):
        return [nn.ConvTranspose2d(cin, cout, 4, 2, 1), nn.LeakyReLU(0.2),
                nn.BatchNorm2d(cout, eps=eps, momentum=momentum)]
    return nn.Sequential(nn.Linear(NOISE, 4 * 4 * 512), nn.Unflatten(1, (512, 4, 4)),
                         *up(512, 256), *up(256, 128), *up(128, 64),
                         nn.ConvTranspose2d(64, 3, 4, 2, 1), output())


def discriminator(eps=1e-3, momentum=0.01, dropout=0.5):
    def down(cin, cout, bn=True):
        return [nn.Conv2d(cin, cout, 4, 2, 1), nn.LeakyReLU(0.2)] + (
            [nn.BatchNorm2d(cout, eps=eps, momentum=momentum)] if bn else [])
    return nn.Sequential(nn.Conv2d(3, 32, 4, 2, 1),  # no activation, as the notebook
                         *down(32, 64), *down(64, 128), *down(128, 256, bn=False),
                         nn.Flatten(), nn.Dropout(dropout), nn.Linear(4 * 4 * 256, 1),
                         nn.Sigmoid())


def keras_init(model):
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20, help="timed steps")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--compile", action="store_true", help="torch.compile both nets")
    args = ap.parse_args()
    out = keep_stdout_clean()
    threads = core_count()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dev, b = torch.device(args.device), args.batch

    G, D = keras_init(generator()).to(dev), keras_init(discriminator()).to(dev)
    counts = tuple(sum(p.numel() for p in m.parameters()) for m in (G, D))
    assert counts == (3_584_323, 694_625), f"trainable params G, D = {counts}"
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)
    d_bns = [m for m in D.modules() if isinstance(m, nn.BatchNorm2d)]
    g_fwd, d_fwd = (torch.compile(G), torch.compile(D)) if args.compile else (G, D)
    bce = nn.BCELoss()

    real = torch.rand(b, 3, 64, 64, device=dev)
    ones, zeros = torch.ones(b, 1, device=dev), torch.zeros(b, 1, device=dev)

    def set_d_frozen(frozen):
        D.train()
        for bn in d_bns:
            bn.train(not frozen)
        for p in D.parameters():
            p.requires_grad_(not frozen)

    def d_update(x, label):
        opt_d.zero_grad(set_to_none=True)
        loss = bce(d_fwd(x), label)
        loss.backward()
        opt_d.step()
        return loss

    def step():
        noise = torch.rand(b, NOISE, device=dev) * 2 - 1
        G.eval()
        with torch.no_grad():
            fakes = g_fwd(noise)
        set_d_frozen(False)
        d_loss = d_update(real, ones) + d_update(fakes, zeros)
        noise = torch.rand(b, NOISE, device=dev) * 2 - 1
        G.train()
        set_d_frozen(True)
        opt_g.zero_grad(set_to_none=True)
        g_loss = bce(d_fwd(g_fwd(noise)), ones)
        g_loss.backward()
        opt_g.step()
        return d_loss.item(), g_loss.item()

    runs = []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        d_loss, g_loss = step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        if i >= args.warmup:
            runs.append(dt)
        print(f"step {i + 1}{' (warm-up)' if i < args.warmup else ''}: {dt:.3f} s, "
              f"D {d_loss:.3f} G {g_loss:.3f}", file=sys.stderr)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}", file=sys.stderr)

    emit(out, record("pytorch-compiled" if args.compile else "pytorch", "step", args.device,
                     runs, threads, batch=b))


if __name__ == "__main__":
    main()
