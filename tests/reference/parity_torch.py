"""Runs N training steps of the `dcgan` preset's recipe in PyTorch and writes every loss and
the final weights, for dcgan to replay step for step (`tests/it/parity.rs`).

Networks: `torch_step.py`'s, with the dcgan preset's settings (tanh output; BatchNorm eps
1e-5, momentum 0.1; Adam lr 2e-4, betas (0.5, 0.999), eps 1e-8) and the start weights of
parity_common.py. Faces: the first --batch x --steps JPEGs of --data, cropped and resized
with the notebook's PIL code, scaled to [-1, 1]. Noise: U(-1, 1) from a seeded numpy
generator, stored in the fixture.

The loop is the DCGAN paper's, as PyTorch's DCGAN example runs it, each step:
  fake = G(noise) in training mode;
  D: BCE(D(real), 1) and BCE(D(fake.detach()), 0), each batch through D on its own, their
     gradients summed, one Adam step;
  G: BCE(D(fake), 1) through the updated D, one Adam step.
Two departures from the example, both to match what dcgan defines (and both documented):
  - G's pass through D leaves D's BatchNorm running statistics alone (the example's D is in
    training mode there and updates them; they never affect a training-mode loss);
  - running variances are also tracked biased (a forward hook), as dcgan and Keras keep
    them; PyTorch's own are unbiased, n/(n-1) larger per update. The fixture stores the
    biased ones; the script prints how far PyTorch's own are from them.
--dropout defaults to 0, because dropout masks cannot agree across frameworks.

It runs in float64 and in float32, and parity_common.NUDGED more times in float64 from starts
nudged by a float32 rounding, and stores all: in float32, no two programs agree beyond the
first step (see parity_common.py), so dcgan is held to the float64 answer as closely as
PyTorch's own float32-sized changes are.

    .venv-reference/bin/python tests/reference/parity_torch.py --data FACES_DIR \\
        --out tests/data/parity/torch_dcgan.safetensors [--batch 4] [--steps 5]
"""
import sys

import numpy as np
import torch
from torch import nn

sys.dont_write_bytecode = True
import parity_common as pc
from torch_step import NOISE, discriminator, generator


def load_start(model, prefix, nudge):
    state = model.state_dict()
    for name, value in state.items():
        if value.dtype.is_floating_point:
            start = pc.start_value(prefix, name, tuple(value.shape), nudge)
            value.copy_(torch.from_numpy(start).to(value.dtype))


class BiasedRunningVar:
    """Tracks each BatchNorm's running variance with the biased batch variance."""

    def __init__(self, model):
        self.var = {}
        self.enabled = True
        for name, m in model.named_modules():
            if isinstance(m, nn.BatchNorm2d):
                self.var[name] = m.running_var.detach().clone()
                m.register_forward_hook(self.hook(name))

    def hook(self, name):
        def update(m, inputs, _output):
            if m.training and self.enabled:
                x = inputs[0].detach()
                batch_var = x.var(dim=(0, 2, 3), unbiased=False)
                self.var[name] = (1 - m.momentum) * self.var[name] + m.momentum * batch_var
        return update

    def into(self, state):
        """Puts the biased variances into `state`; returns how far PyTorch's were."""
        worst = 0.0
        for name, v in self.var.items():
            worst = max(worst, float((state[f"{name}.running_var"] - v).abs().max()))
            state[f"{name}.running_var"] = v.float()
        return worst


def set_bn_momentum(model, momentum):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = momentum


def train(args, dtype, real, noise, nudge=None, dropout=None, mask_seed=None):
    """The loop in `dtype`; returns the losses, the final float state dicts (as float32) and
    the state dicts after the first step."""
    torch.set_default_dtype(dtype)
    # dropout masks, if any
    torch.manual_seed(args.seed if mask_seed is None else mask_seed)
    rate = args.dropout if dropout is None else dropout
    to_t = (lambda a: torch.from_numpy(a).to(dtype))
    b, momentum = args.batch, 0.1
    G = generator(output=nn.Tanh, eps=1e-5, momentum=momentum)
    D = discriminator(eps=1e-5, momentum=momentum, dropout=rate)
    load_start(G, "g.", nudge)
    load_start(D, "d.", nudge)
    g_var, d_var = BiasedRunningVar(G), BiasedRunningVar(D)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999), eps=args.adam_eps)
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999), eps=args.adam_eps)
    bce = nn.BCELoss()
    state = lambda m: {k: v.detach().float().clone() for k, v in m.state_dict().items()
                       if v.dtype.is_floating_point}
    G.train()
    D.train()
    losses, after1 = [], None
    for s in range(args.steps):
        fake = G(to_t(noise[s]))
        opt_d.zero_grad()
        loss_real = bce(D(to_t(real[s])), torch.ones(b, 1))
        loss_real.backward()
        loss_fake = bce(D(fake.detach()), torch.zeros(b, 1))
        loss_fake.backward()
        opt_d.step()
        opt_g.zero_grad()
        set_bn_momentum(D, 0.0)  # D frozen: its running statistics stay
        d_var.enabled = False
        loss_g = bce(D(fake), torch.ones(b, 1))
        set_bn_momentum(D, momentum)
        d_var.enabled = True
        loss_g.backward()
        opt_g.step()
        losses.append([loss_real.item(), loss_fake.item(), loss_g.item()])
        if s == 0:
            after1 = state(G), state(D)
            g_var.into(after1[0])
            d_var.into(after1[1])
        print(f"{dtype} step {s + 1}: D real {losses[-1][0]:.6f} D fake {losses[-1][1]:.6f} "
              f"G {losses[-1][2]:.6f}", file=sys.stderr)
    final_g, final_d = state(G), state(D)
    off = max(g_var.into(final_g), d_var.into(final_d))
    print(f"PyTorch's unbiased running variances differ from the biased ones by up to "
          f"{off:.3g}", file=sys.stderr)
    numpy = lambda st: {k: v.numpy() for k, v in st.items()}
    return losses, numpy(final_g), numpy(final_d), numpy(after1[0]), numpy(after1[1])


def main():
    ap = pc.arguments(__doc__)
    ap.add_argument("--adam-eps", type=float, default=1e-8, help="Adam's epsilon")
    args = ap.parse_args()
    torch.set_num_threads(1)  # one summation order, run to run
    b, steps = args.batch, args.steps

    faces = pc.load_faces(args.data, b * steps)
    real = pc.symmetric_normalise(faces).transpose(0, 3, 1, 2).reshape(steps, b, 3, 64, 64)
    noise = np.random.default_rng(args.seed).uniform(-1, 1, size=(steps, b, NOISE))
    noise = noise.astype(np.float32)
    runs = {name: train(args, dtype, real, noise)
            for name, dtype in (("float64", torch.float64), ("float32", torch.float32))}
    runs["nudged"] = [train(args, torch.float64, real, noise, nudge=p) for p in range(pc.NUDGED)]
    runs["dropout"] = [train(args, torch.float32, real, noise, dropout=pc.DROPOUT, mask_seed=s)[0]
                       for s in range(pc.DROPOUT_RUNS)]
    pc.write_fixture(args.out, faces, runs, noise, noise, {
        "framework": f"torch {torch.__version__}", "preset": "dcgan", "loop": "paper",
        "batch": b, "steps": steps, "dropout": args.dropout, "adam_eps": args.adam_eps})


if __name__ == "__main__":
    main()
