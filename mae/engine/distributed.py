"""torch.distributed set-up for torchrun and SLURM: rank, world size, device, and rank-0-only output.

Who started the processes is read from the environment of each training process (never where a command was
parsed or submitted), in this order:

- torchrun, or mae.submit (which sets the same variables from SLURM's view of the job): RANK, WORLD_SIZE,
  LOCAL_RANK; torch reads the rendezvous (MASTER_ADDR, MASTER_PORT, torchrun's store) from the environment.
- `srun python -m mae.pretrain` without torchrun: SLURM_PROCID, SLURM_STEP_NUM_TASKS and SLURM_LOCALID. The
  rendezvous is MASTER_ADDR / MASTER_PORT when set, else the step's first node and a port derived from
  SLURM_JOB_ID (so two jobs sharing a node do not both ask for 29500).
- Otherwise one process.

The device: "auto" is cuda when this process sees a GPU, else cpu. With several processes each takes the GPU
of its local rank among those it sees, or the only one it sees where the cluster binds one GPU per task.
"""

import os
import re
import zlib
from dataclasses import dataclass

import torch
import torch.distributed as dist

# Ports derived from a job id fall in [PORTS[0], PORTS[0] + PORTS[1]): below Linux's ephemeral range
# (32768-60999), from which outgoing connections take their local ports, so no client socket holds one.
PORTS = (10000, 20000)


@dataclass
class Context:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    launcher: str = "none"  # "torchrun", "slurm" (srun without torchrun) or "none"

    @property
    def distributed(self):
        return self.world_size > 1

    @property
    def is_main(self):
        return self.rank == 0


@dataclass(frozen=True)
class Launch:
    """What the launcher says about this process. address/port are set only where this module chooses the
    rendezvous (srun without torchrun); torchrun's is read by torch itself."""

    launcher: str = "none"
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    address: str = None
    port: int = None


def _int(env, name):
    text = env[name]
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} in the environment is not an integer") from None


def read_launch(env=None):
    """The Launch the environment describes (os.environ by default)."""
    env = os.environ if env is None else env
    if "RANK" in env:  # torchrun (or mae.submit); a world of one when WORLD_SIZE is absent
        world = _int(env, "WORLD_SIZE") if "WORLD_SIZE" in env else 1
        local = _int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else 0
        launch = Launch("torchrun", _int(env, "RANK"), world, local)
        names = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
    # srun sets SLURM_STEP_NUM_TASKS for the processes of a step. SLURM_NTASKS is not enough: a batch script
    # sees it too (the job's task count), and a plain `python -m mae.pretrain` there is one process, which
    # would otherwise wait for ranks that never start.
    elif "SLURM_PROCID" in env and "SLURM_STEP_NUM_TASKS" in env:
        world = _int(env, "SLURM_STEP_NUM_TASKS")
        local = _int(env, "SLURM_LOCALID") if "SLURM_LOCALID" in env else 0
        launch = Launch("slurm", _int(env, "SLURM_PROCID"), world, local)
        if world > 1:
            launch = Launch("slurm", launch.rank, world, local, rendezvous_host(env), rendezvous_port(env))
        names = ("SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID")
    else:
        return Launch()
    if launch.world_size < 1 or not 0 <= launch.rank < launch.world_size or launch.local_rank < 0:
        raise ValueError(
            f"inconsistent process description from {launch.launcher}: {names[0]}={launch.rank}, "
            f"{names[1]}={launch.world_size}, {names[2]}={launch.local_rank} (a rank must lie in "
            f"[0, world size))"
        )
    return launch


def first_host(nodelist):
    """The first host of a SLURM node list: 'gpu[07-09,12],cpu1' -> 'gpu07', 'a[1-2]-ib[3-4]' -> 'a1-ib3'."""
    depth, end = 0, len(nodelist)
    for i, char in enumerate(nodelist):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            end = i
            break
    entry = nodelist[:end].strip()
    if not entry:
        raise ValueError(f"empty SLURM node list {nodelist!r}")
    return re.sub(r"\[([^\]]*)\]", lambda m: m.group(1).split(",")[0].split("-")[0], entry)


def rendezvous_host(env):
    """MASTER_ADDR, else the first node of the step (or of the job)."""
    if env.get("MASTER_ADDR"):
        return env["MASTER_ADDR"]
    for name in ("SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST"):
        if env.get(name):
            return first_host(env[name])
    raise ValueError(
        "srun without torchrun: set MASTER_ADDR, or run inside a SLURM step (SLURM_STEP_NODELIST)"
    )


def port_for_job(job_id):
    """A rendezvous port from a job id: consecutive SLURM job ids get different ports (two jobs sharing a
    node are, in practice, never 20,000 ids apart); other ids (submitit's '123_4', a local pid) are hashed."""
    job_id = str(job_id)
    number = int(job_id) if job_id.isdigit() else zlib.crc32(job_id.encode())
    return PORTS[0] + number % PORTS[1]


def rendezvous_port(env):
    """MASTER_PORT, else a port derived from SLURM_JOB_ID."""
    if env.get("MASTER_PORT"):
        port = _int(env, "MASTER_PORT")
        if not 0 < port < 65536:
            raise ValueError(f"MASTER_PORT={port} is not a TCP port")
        return port
    if env.get("SLURM_JOB_ID"):
        return port_for_job(env["SLURM_JOB_ID"])
    raise ValueError("srun without torchrun: set MASTER_PORT, or run inside a SLURM job (SLURM_JOB_ID)")


def local_gpu(local_rank, count, visible=None):
    """The index, among the GPUs this process sees, of the one it trains on."""
    if (
        count == 1 and visible is not None
    ):  # the cluster binds one GPU per task (srun --gpus-per-task=1): cuda:0
        return 0
    if local_rank < count:
        return local_rank
    raise RuntimeError(
        f"this process has local rank {local_rank} but sees only {count} GPUs (CUDA_VISIBLE_DEVICES="
        f"{visible if visible is not None else 'unset'}): start at most one process per GPU on each node"
    )


def resolve_device(requested, launch=Launch()):
    """(torch.device, how it was chosen) for this process. Called in the process that trains."""
    requested = str(requested or "auto")
    if requested == "auto":
        found = torch.cuda.is_available()
        requested = "cuda" if found else "cpu"
        how = (
            f"--device auto: {torch.cuda.device_count()} GPUs visible"
            if found
            else "--device auto: no GPU visible"
        )
    else:
        how = f"--device {requested}"
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise ValueError(f"--device {requested!r} is not a device: use auto, cuda, cuda:N or cpu") from None
    if device.type != "cuda":
        return device, how
    if not torch.cuda.is_available():
        raise RuntimeError(
            f"--device {requested} was asked for, but no GPU is visible; pass --device cpu (or auto)"
        )
    count, visible = torch.cuda.device_count(), os.environ.get("CUDA_VISIBLE_DEVICES")
    if launch.world_size == 1:  # one process: the GPU asked for, as it was asked
        if device.index is not None and device.index >= count:
            raise RuntimeError(
                f"--device {requested}, but this process sees {count} GPUs (CUDA_VISIBLE_DEVICES="
                f"{visible if visible is not None else 'unset'})"
            )
        return device, how
    # Several processes: each its own GPU. An index given with --device (cuda:0) would put every rank on the
    # same GPU, which NCCL refuses: the local rank decides, and the line that reports the device says so.
    index = local_gpu(launch.local_rank, count, visible)
    if device.index is not None:
        how += (
            f" names one GPU, but each of the {launch.world_size} processes takes its own (the local rank's)"
        )
    return torch.device("cuda", index), how


def _init_method(launch):
    if launch.address is None:
        return "env://"  # torchrun's variables (and its store), or those mae.submit set
    host = f"[{launch.address}]" if ":" in launch.address else launch.address  # an IPv6 address
    return f"tcp://{host}:{launch.port}"


def init(device="auto", env=None):
    """Join the process group the launcher described (see the module's docstring): NCCL on GPUs, gloo on CPUs.

    One process (no launcher, or a world of one): no group. Rank 0 prints where the processes and the device
    come from when the command line does not say it (--device auto, or several processes)."""
    launch = read_launch(env)
    target, how = resolve_device(device, launch)
    if (
        target.type == "cuda"
    ):  # the current device: NCCL binds to it, and CUDA events and streams default to it
        torch.cuda.set_device(target)
    if launch.world_size == 1:
        context = Context(device=target, launcher=launch.launcher)
    else:
        backend = "nccl" if target.type == "cuda" else "gloo"
        dist.init_process_group(
            backend=backend, init_method=_init_method(launch), rank=launch.rank, world_size=launch.world_size
        )
        context = Context(launch.rank, launch.local_rank, launch.world_size, target, launch.launcher)
    if context.is_main and (str(device) == "auto" or context.distributed):
        print(describe(context, how, launch), flush=True)
    return context


def describe(context, how, launch=Launch()):
    """The first line a run prints: the device it resolved, and who described the processes."""
    line = f"device {context.device} ({how})"
    if context.distributed:
        where = f", rendezvous {launch.address}:{launch.port}" if launch.address else ""
        backend = "nccl" if context.device.type == "cuda" else "gloo"
        line += (
            f"; {context.world_size} processes from {context.launcher}, rank {context.rank} (local "
            f"{context.local_rank}), backend {backend}{where}"
        )
    return line


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
