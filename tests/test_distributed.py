"""On 2 CPU processes (gloo), the gathered NT-Xent and its gradients equal the single-process
loss and gradients on the same global batch."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from selfsight.losses import nt_xent

N, D_IN, D_OUT, T = 8, 6, 4, 0.2


def batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(N, D_IN, generator=g), torch.randn(N, D_IN, generator=g)


def model():
    torch.manual_seed(1)
    return torch.nn.Linear(D_IN, D_OUT)


def worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    net = DistributedDataParallel(model())
    x1, x2 = batch()
    local = slice(rank * N // world, (rank + 1) * N // world)
    loss = nt_xent(net(x1[local]), net(x2[local]), T)
    loss.backward()
    total = loss.detach().clone()
    dist.all_reduce(total)
    out[rank] = {"loss": total / world, "grad": net.module.weight.grad.clone()}
    dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_gathered_loss_and_gradients_match_single_process():
    net = model()
    x1, x2 = batch()
    loss = nt_xent(net(x1), net(x2), T)
    loss.backward()
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(worker, args=(2, free_port(), out), nprocs=2, join=True)
        results = dict(out)
    for rank in (0, 1):
        assert torch.allclose(results[rank]["loss"], loss.detach(), atol=1e-6)
        assert torch.allclose(results[rank]["grad"], net.weight.grad, atol=1e-6)
