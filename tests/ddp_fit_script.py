"""Train a small linear model with labkit.train.fit on fixed data and save its final weights.

tests/test_train.py runs it under ``torchrun --nproc_per_node 2`` (two CPU processes, gloo) and
compares with :func:`run` in one process: data parallelism must give the same weights as one
process trained on the full batches.
"""

import os
import sys

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from labkit import train


def run(batch_size: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    x = torch.randn(64, 5)
    y = (x @ torch.randn(5, 3)).argmax(-1)
    model = nn.Linear(5, 3)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    train.fit(model, loader, epochs=3, optimizer=optimizer, clip=0.5, progress=False, cpu=True)
    return model.state_dict()


if __name__ == "__main__":
    weights = run(int(sys.argv[2]))
    if int(os.environ.get("RANK", "0")) == 0:
        torch.save(weights, sys.argv[1])
    if torch.distributed.is_initialized():  # leave together: a process exiting while gloo's threads still
        torch.distributed.barrier()         # talk to the other one can abort ("terminate called without an
        torch.distributed.destroy_process_group()  # active exception"), which failed one CI run
