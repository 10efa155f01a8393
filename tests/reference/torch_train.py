"""Trains the `dcgan` preset's networks and recipe in PyTorch on real faces and writes G as a
safetensors state dict that `dcgan eval --ckpt G.safetensors --config configs/dcgan.json`
scores, so PyTorch's training and dcgan's are judged by the same measure.

The recipe of configs/dcgan.json: tanh output on faces scaled to [-1, 1]; N(0, 0.02) conv
and linear weights, zero biases, BatchNorm gamma N(1, 0.02) (PyTorch's DCGAN example's
weights_init); BatchNorm eps 1e-5, momentum 0.1; D's dropout 0.5 (the notebook's D); Adam lr
2e-4, betas (0.5, 0.999), eps 1e-8; U(-1, 1) noise; the faces reshuffled every epoch, the last
partial batch dropped. The loop is the DCGAN paper's, as PyTorch's example runs it (one fake
batch per step in training mode; D one update on real and fake gradients summed; G through
the updated D): dcgan's `--loop paper`. Faces: the first --limit JPEGs of --data in sorted
order (as `dcgan train --limit`), cropped and resized with the notebook's PIL code.

    .venv-reference/bin/python tests/reference/torch_train.py --data TRAIN_DIR --limit 2000 \\
        --batch 64 --epochs 4 --seed 1 --out torch-g.safetensors
"""
import argparse
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # must precede the torch import

import numpy as np
import torch
from torch import nn

sys.dont_write_bytecode = True
import parity_common as pc
from bench_common import core_count
from torch_step import NOISE, discriminator, generator


def dcgan_init(model):
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder of CelebA JPEGs (training faces)")
    ap.add_argument("--limit", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", required=True, help="G's state dict (.safetensors)")
    args = ap.parse_args()
    torch.set_num_threads(core_count())
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    t0 = time.perf_counter()
    faces = pc.symmetric_normalise(pc.load_faces(args.data, args.limit)).transpose(0, 3, 1, 2)
    faces = torch.from_numpy(np.ascontiguousarray(faces))
    print(f"loaded {len(faces)} faces in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    G = dcgan_init(generator(output=nn.Tanh, eps=1e-5, momentum=0.1))
    D = dcgan_init(discriminator(eps=1e-5, momentum=0.1, dropout=0.5))
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999), eps=1e-8)
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999), eps=1e-8)
    bce = nn.BCELoss()
    b = args.batch
    ones, zeros = torch.ones(b, 1), torch.zeros(b, 1)

    t0, step = time.perf_counter(), 0
    for epoch in range(args.epochs):
        order = rng.permutation(len(faces))
        for i in range(len(faces) // b):
            real = faces[order[i * b:(i + 1) * b]]
            noise = torch.from_numpy(rng.uniform(-1, 1, size=(b, NOISE)).astype(np.float32))
            fake = G(noise)
            opt_d.zero_grad()
            loss_real = bce(D(real), ones)
            loss_fake = bce(D(fake.detach()), zeros)
            (loss_real + loss_fake).backward()
            opt_d.step()
            opt_g.zero_grad()
            loss_g = bce(D(fake), ones)
            loss_g.backward()
            opt_g.step()
            step += 1
        print(f"epoch {epoch + 1}: step {step}, D {loss_real.item() + loss_fake.item():.3f} "
              f"G {loss_g.item():.3f}, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    state = {k: v.detach().numpy() for k, v in G.state_dict().items() if v.dtype.is_floating_point}
    pc.write_safetensors(args.out, state, {"framework": f"torch {torch.__version__}",
                                           "steps": step, "seed": args.seed})
    print(f"wrote {args.out}: {step} steps in {time.perf_counter() - t0:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
