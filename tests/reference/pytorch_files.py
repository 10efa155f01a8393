"""Writes the small PyTorch files tests/it/pytorch_files.rs reads, each made by torch.save itself:

  d_first_layers.pt         part of D's state dict, zip format (PyTorch 1.6 and later): layer 0
                            (its weight in float64) and BatchNorm 3 with num_batches_tracked;
  d_first_layers_legacy.pt  the same in the format before 1.6 (_use_new_zipfile_serialization
                            off);
  d_first_layers.safetensors the same tensors as float32, to compare against;
  model_object.pt           a whole nn.Sequential saved as an object, not a state dict.

The values are parity_common.start_value's. Layer 1 is left out on purpose, so that loading
the file as D stops at the first missing tensor, `1.weight`.

    .venv-reference/bin/python tests/reference/pytorch_files.py --out tests/data/pytorch
"""
import argparse
import os
import sys

import numpy as np
import torch
from torch import nn

sys.dont_write_bytecode = True
import parity_common as pc
from torch_step import discriminator

KEEP = ["0.weight", "0.bias", "3.weight", "3.bias", "3.running_mean", "3.running_var",
        "3.num_batches_tracked"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder to write into")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    full = discriminator().state_dict()
    state = {}
    for name in KEEP:
        value = full[name]
        if value.dtype.is_floating_point:
            value = torch.from_numpy(pc.start_value("d.", name, tuple(value.shape)))
        state[name] = value
    state["0.weight"] = state["0.weight"].double()
    out = lambda name: os.path.join(args.out, name)
    torch.save(state, out("d_first_layers.pt"))
    torch.save(state, out("d_first_layers_legacy.pt"), _use_new_zipfile_serialization=False)
    pc.write_safetensors(out("d_first_layers.safetensors"),
                         {k: v.float().numpy() for k, v in state.items()
                          if v.dtype.is_floating_point},
                         {"framework": f"torch {torch.__version__}"})
    torch.save(nn.Sequential(nn.Linear(2, 2)), out("model_object.pt"))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
