"""Pretraining, linear probing or fine-tuning on a SLURM cluster through submitit: one task per GPU, many nodes.

    python -m mae.submit --nodes 8 --ngpus 8 --partition learnlab --timeout 4320 \\
        --model mae_vit_large_patch16 --batch_size 64 --accum_iter 1 --epochs 800 --warmup_epochs 40 \\
        --blr 1.5e-4 --norm_pix_loss --mask_ratio 0.75 --weight_decay 0.05 \\
        --data_path /datasets/imagenet --output_dir /checkpoints/mae_vit_large

That is the paper's ViT-L recipe: 8 nodes x 8 GPUs x 64 images = an effective batch of 4096
(lr = 1.5e-4 * 4096 / 256 = 2.4e-3). Every flag after the SLURM ones is a `mae.pretrain` flag;
with `--job finetune` or `--job linprobe` they are that job's flags (presets included):

    python -m mae.submit --job finetune --nodes 4 --ngpus 8 --preset vit_base \
        --finetune mae_pretrain_vit_base.pth --data_path /datasets/imagenet --output_dir /checkpoints/ft_vitb

The device is chosen in each task, on the node that trains (--device auto: its GPU), never on the host that
submits, which often has none; the rendezvous port comes from the job's id (mae.engine.distributed).

A preempted or timed-out job finishes its step, saves output_dir/checkpoint-last.pth, is requeued
and resumes from it. Without SLURM (no `sbatch`) the command refuses, unless --local asks for
submitit's local executor (the job then runs in the background on this machine).
"""

import argparse
import os
import signal
from pathlib import Path

from . import finetune, linprobe, pretrain
from .engine import distributed
from .engine.flags import parse_job_args, positive_int
from .engine.preemption import Preempted

# job -> (its argument parser, its presets, the function that runs it with parsed arguments)
JOBS = {
    "pretrain": (pretrain.get_args_parser, {}, pretrain.main),
    "linprobe": (linprobe.get_args_parser, linprobe.PRESETS, linprobe.main),
    "finetune": (finetune.get_args_parser, finetune.PRESETS, finetune.main),
}


def get_args_parser(job="pretrain"):
    parser = argparse.ArgumentParser(
        f"MAE {job} on SLURM", parents=[JOBS[job][0]()], add_help=True, conflict_handler="resolve"
    )
    parser.add_argument("--job", choices=sorted(JOBS), default="pretrain")
    parser.add_argument("--nodes", type=positive_int, default=1)
    parser.add_argument("--ngpus", type=positive_int, default=8, help="GPUs per node")
    parser.add_argument("--timeout", type=positive_int, default=4320, help="minutes per job")
    parser.add_argument("--partition", default=None)
    parser.add_argument("--account", default=None)
    parser.add_argument("--qos", default=None)
    parser.add_argument("--constraint", default=None)
    parser.add_argument("--cpus_per_task", type=positive_int, default=10)
    parser.add_argument(
        "--mem_gb", type=positive_int, default=None, help="memory per node (default: 40 GB per GPU)"
    )
    parser.add_argument("--job_dir", default=None, help="submitit logs (default: output_dir/submitit)")
    parser.add_argument(
        "--use_volta32", action="store_true", help="ask for 32 GB V100s (--constraint volta32gb)"
    )
    parser.add_argument("--comment", default="", help="a comment attached to the SLURM job")
    parser.add_argument("--local", action="store_true",
                        help="without SLURM, run through submitit's local executor, in the background on this "
                             "machine (default: refuse)")  # fmt: skip
    return parser


SLURM_FLAGS = (
    "job",
    "nodes",
    "ngpus",
    "timeout",
    "partition",
    "account",
    "qos",
    "constraint",
    "cpus_per_task",
    "mem_gb",
    "job_dir",
    "use_volta32",
    "comment",
    "local",
)


def parse_args(argv=None):
    """The --job first, then that job's flags (its --preset applied) and the SLURM ones."""
    job = argparse.ArgumentParser(add_help=False)
    job.add_argument("--job", choices=sorted(JOBS), default="pretrain")
    known, _ = job.parse_known_args(argv)
    return parse_job_args(argv, get_args_parser(known.job), JOBS[known.job][1])


def engine_args(args):
    """The job's own arguments, without the SLURM ones."""
    return argparse.Namespace(**{k: v for k, v in vars(args).items() if k not in SLURM_FLAGS})


class Trainer:
    """The callable submitit runs in every task; requeued on preemption or timeout."""

    def __init__(self, args, job="pretrain"):
        self.args, self.job = args, job

    def __call__(self):
        import submitit

        env = submitit.JobEnvironment()
        # What torchrun would set, from SLURM's view of the job (or the local executor's). The port comes from
        # the job's id, not a fixed 29500, which two jobs sharing a node would both ask for. Nothing here
        # decides the device: the job's --device (auto by default) is resolved by mae.engine.distributed in this task,
        # on the node that trains, not on the host that submitted.
        port = os.environ.get("MASTER_PORT") or distributed.port_for_job(
            os.environ.get("SLURM_JOB_ID") or env.job_id
        )
        os.environ.update(
            RANK=str(env.global_rank), WORLD_SIZE=str(env.num_tasks), LOCAL_RANK=str(env.local_rank),
            MASTER_ADDR=env.hostnames[0], MASTER_PORT=str(port),
        )  # fmt: skip
        try:
            JOBS[self.job][2](self.args)
        except Preempted as stop:
            pass_on(stop)
            raise  # not finished: submitit must not record a result

    def checkpoint(self):
        """submitit's requeue hook. It runs once the engine has finished its step and saved (see pass_on), so
        there is nothing left to save: the requeued job resumes from output_dir/checkpoint-last.pth."""
        import submitit

        return submitit.helpers.DelayedSubmission(Trainer(self.args, self.job))


def pass_on(stop):
    """Hand the stop signals the engine caught (and saved for) to the handlers that were there before it:
    submitit's. Its preemption signal (SIGUSR2, or SUBMITIT_PREEMPT_SIGNAL) then calls Trainer.checkpoint and
    requeues the job (on rank 0, which then exits); SIGTERM it only logs (a scancel sends it too, and must
    not requeue)."""
    for signum in dict.fromkeys(stop.signals):
        handler = signal.getsignal(signum)
        if callable(handler) and handler is not signal.default_int_handler:
            handler(signum, None)


def main(argv=None):
    import submitit

    args = parse_args(argv)
    job_dir = Path(args.job_dir or Path(args.output_dir) / "submitit")
    executor = submitit.AutoExecutor(folder=job_dir, slurm_max_num_timeout=30)
    if executor.cluster != "slurm" and not args.local:
        raise SystemExit(
            f"mae.submit: no SLURM on this machine (no sbatch on PATH), so there is nothing to submit to; "
            f"submitit would run the job here, in the background ({executor.cluster} executor). Run "
            f"`python -m mae.{args.job} ...` (or torchrun) directly, or pass --local to run it through "
            f"submitit on this machine anyway."
        )
    if args.use_volta32:
        args.constraint = "volta32gb"
    slurm = {
        k: getattr(args, k)
        for k in ("partition", "account", "qos", "constraint", "comment")
        if getattr(args, k)
    }
    executor.update_parameters(
        nodes=args.nodes, tasks_per_node=args.ngpus, gpus_per_node=args.ngpus, cpus_per_task=args.cpus_per_task,
        mem_gb=args.mem_gb or 40 * args.ngpus, timeout_min=args.timeout, name=f"mae_{args.job}",
        **{f"slurm_{k}": v for k, v in slurm.items()},
    )  # fmt: skip
    job = executor.submit(Trainer(engine_args(args), args.job))
    if executor.cluster == "slurm":
        print(f"submitted job {job.job_id}; logs in {job_dir}")
    else:
        print(
            f"no SLURM: job {job.job_id} runs locally, in the background on this machine ({executor.cluster} "
            f"executor); logs in {job_dir}"
        )
    return job


if __name__ == "__main__":
    main()
