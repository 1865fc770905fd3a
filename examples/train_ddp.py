"""Train a resdsl network with DistributedDataParallel on a few synthetic batches.

    torchrun --nproc_per_node 2 examples/train_ddp.py                      # CPU, gloo
    torchrun --nproc_per_node 8 examples/train_ddp.py --spec specs/resnet50.res --steps 100

Uses NCCL and one GPU per process when CUDA is available, gloo on CPU otherwise. Every
rank builds the model with the same seed; DDP averages gradients, so the replicas stay
equal, which the script checks at the end.
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

import resdsl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="specs/resnet20_cifar.res", help="a .res file")
    parser.add_argument("--steps", type=int, default=5, help="synthetic batches to train on")
    parser.add_argument("--batch-size", type=int, default=8, help="per process")
    parser.add_argument("--lr", type=float, default=0.05)
    args = parser.parse_args()

    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)

    net = resdsl.load(args.spec)
    model = resdsl.build(net, seed=0).to(device)
    ddp = DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=args.lr, momentum=0.9)
    classes = net.output_shape[0]

    # each rank draws its own synthetic shard
    gen = torch.Generator().manual_seed(1000 + rank)
    ddp.train()
    for step in range(args.steps):
        x = torch.randn(args.batch_size, *net.input_shape, generator=gen).to(device)
        y = torch.randint(classes, (args.batch_size,), generator=gen).to(device)
        loss = F.cross_entropy(ddp(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        mean = loss.detach().clone()
        dist.all_reduce(mean)  # the loss over all ranks' batches, for the log
        if rank == 0:
            print(f"step {step + 1}/{args.steps}: loss {mean.item() / world:.4f}", flush=True)

    # the replicas must still be equal: compare a checksum of every parameter across ranks
    with torch.no_grad():
        checksum = torch.stack([p.double().sum() for p in model.parameters()]).to(device)
    gathered = [torch.empty_like(checksum) for _ in range(world)]
    dist.all_gather(gathered, checksum)
    same = all(torch.equal(gathered[0], g) for g in gathered[1:])
    if rank == 0:
        params = sum(p.numel() for p in model.parameters())
        print(f"{'ok' if same else 'MISMATCH'}: {net.name}, {params:,} parameters, {world} processes, "
              f"replicas {'in sync' if same else 'diverged'}", flush=True)
    # every rank past its last collective, and DDP's reducer gone, before the group is torn
    # down: otherwise gloo's threads can still be running as a rank exits (SIGABRT)
    dist.barrier()
    del ddp
    dist.destroy_process_group()
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
