"""torch.distributed set-up for torchrun and SLURM: rank, world size, device, and rank-0-only output."""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Context:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self):
        return self.world_size > 1

    @property
    def is_main(self):
        return self.rank == 0


def init(device="cuda"):
    """Join the process group that torchrun (or the SLURM launcher) described in the environment.

    NCCL on GPUs, gloo on CPUs. Without RANK/WORLD_SIZE in the environment, or with a world of one: one process.
    """
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but no GPU is visible; pass --device cpu")
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", 1)) == 1:  # one process: no group needed
        return Context(device=torch.device(device))
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device == "cuda":
        torch.cuda.set_device(local_rank)
        backend, target = "nccl", torch.device("cuda", local_rank)
    else:
        backend, target = "gloo", torch.device(device)
    dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return Context(rank, local_rank, world_size, target)


def finish(context):
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()


def replicas_identical(model, context):
    """True when every rank holds exactly the same parameters (a cheap end-of-run consistency check)."""
    if not context.distributed:
        return True
    total = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1)
    smallest, largest = total.clone(), total.clone()
    dist.all_reduce(smallest, op=dist.ReduceOp.MIN)
    dist.all_reduce(largest, op=dist.ReduceOp.MAX)
    return bool(smallest == largest)


def mean_across_ranks(value, context):
    """Average a float over all ranks (for logging)."""
    if not context.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=context.device)
    dist.all_reduce(tensor)
    return tensor.item() / context.world_size
