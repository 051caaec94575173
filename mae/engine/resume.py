"""Where a run continues: output_dir's own checkpoint-last.pth, else --resume; the weights, optimizer, scaler, RNG
states and position restored; and a run with result-changing arguments refused in a used folder."""

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..checkpoint import CheckpointError, check_finite, load_weights, read_checkpoint, state_dict_from
from ..models import whose_code
from .rng import set_rng_states

LAST = "checkpoint-last.pth"


# Arguments that do not change what a run computes: they may differ when a run in output_dir is continued.
# Every other argument (model, data, batch, schedule, seed, loss, ...) must match the checkpoint's.
RESULT_NEUTRAL_ARGS = {
    "output_dir", "log_dir", "resume", "start_epoch", "max_steps", "save_every", "save_epochs", "log_every",
    "num_workers", "pin_mem", "device", "compile", "world_size", "local_rank", "dist_on_itp", "dist_url",
    "dist_eval", "eval", "save_best", "allow_changed_args", "preset", "effective_batch", "save_minutes",
}  # fmt: skip


@dataclass
class Position:
    """Where a run stands: optimizer steps in all, the epoch, and optimizer steps into that epoch."""

    step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0


def resume(args, model, optimizer, scaler, context):
    """Restore the run's own newest state, output_dir/checkpoint-last.pth, else the checkpoint --resume names
    (where a new run starts); returns (Position, path or ""). A rerun or a requeue of a command that contains
    --resume thus continues from where it stopped instead of redoing the work since that file."""
    last = Path(args.output_dir) / LAST
    own = last.exists()
    path = str(last) if own else args.resume
    if not path:
        return Position(epoch=args.start_epoch), ""
    if own and args.resume and Path(args.resume).resolve() != last.resolve() and context.is_main:
        print(f"note: {last} exists, so this run continues from it (its newest state); --resume "
              f"{args.resume} names where a new run starts", flush=True)  # fmt: skip
    checkpoint = read_checkpoint(path, map_location="cpu")
    check_arguments(args, checkpoint, path, own, context, whose_code(model))
    load_training_state(checkpoint, path, model, optimizer, scaler)
    if "step" in checkpoint:  # this project's checkpoints: the exact position
        rngs = checkpoint["rng"]
        set_rng_states(rngs[context.rank] if context.rank < len(rngs) else rngs[0], context.device)
        return Position(checkpoint["step"], checkpoint["epoch"], checkpoint["step_in_epoch"]), path
    return Position(epoch=checkpoint.get("epoch", -1) + 1), path  # official files saved finished epochs


def load_training_state(checkpoint, path, model, optimizer, scaler):
    """Weights (finite, and explained when they do not fit), optimizer and scaler from a checkpoint."""
    state = state_dict_from(checkpoint, path)
    check_finite(state, f"checkpoint {path}")
    try:
        load_weights(model, state, source=f"the weights in {path}")
    except CheckpointError as error:
        raise CheckpointError(
            f"{error}\n--resume (and output_dir's checkpoint-last.pth) continues a run of this job with this "
            f"--model; to start from another model's weights use --finetune (probing, fine-tuning), or give "
            f"the run another --output_dir."
        ) from None
    if "optimizer" in checkpoint:
        saved = checkpoint["optimizer"]
        if (
            "step" in checkpoint
        ):  # this project's own file: perhaps a pretraining run's from before the change
            saved = in_official_pretraining_groups(saved, model, optimizer) or saved
        try:
            optimizer.load_state_dict(saved)
        except (ValueError, KeyError) as error:
            raise CheckpointError(
                f"the optimizer state in {path} does not fit this job's optimizer ({error}): was it saved by "
                f"another job (pretraining, linear probing, fine-tuning)?"
            ) from None
        check_moment_shapes(optimizer, path)
    if checkpoint.get("scaler"):
        scaler.load_state_dict(checkpoint["scaler"])


def check_moment_shapes(optimizer, path):
    """Every loaded moment has its tensor's shape: torch's load_state_dict does not check, and a fused or foreach
    step over a moment of another shape reads past its memory (a crash, not an error)."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            for key, value in optimizer.state.get(param, {}).items():
                if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape != param.shape:
                    raise CheckpointError(
                        f"the optimizer state in {path} does not fit this job's optimizer: its {key!r} of shape "
                        f"{tuple(value.shape)} belongs to a tensor of shape {tuple(param.shape)}: was it saved by "
                        f"another job or for another model?"
                    )


def in_official_pretraining_groups(saved, model, optimizer):
    """A pretraining optimizer state this project saved before its groups became the official ones (until December
    2026 the CLS and mask tokens were not decayed, with the 1-D tensors), with each tensor's moments moved to the
    group it has now, so that a run started then resumes; None for any other state. The groups keep their saved
    settings, so the tokens decay from the next step on."""
    names = {id(p): n for n, p in model.named_parameters()}
    now = [[names[id(p)] for p in group["params"]] for group in optimizer.param_groups]
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    earlier_no_decay = {n for n, p in trainable if p.ndim <= 1 or n.endswith("_token")}
    then = (
        [n for n, _p in trainable if n in earlier_no_decay],
        [n for n, _p in trainable if n not in earlier_no_decay],
    )
    trainable = [n for n, _p in trainable]
    groups = saved.get("param_groups", []) if isinstance(saved, dict) else []
    if (len(now) != 2 or len(groups) != 2 or "mask_token" not in trainable or sorted(now[0] + now[1]) != sorted(trainable)
            or [len(g.get("params", ())) for g in groups] != [len(t) for t in then]
            or [len(n) for n in now] == [len(t) for t in then]):  # fmt: skip
        return None
    index_then = {name: i for i, name in enumerate(then[0] + then[1])}
    order_now = now[0] + now[1]
    state = {
        i: saved["state"][index_then[n]] for i, n in enumerate(order_now) if index_then[n] in saved["state"]
    }
    first = len(now[0])
    return {"state": state, "param_groups": [{**groups[0], "params": list(range(first))},
                                             {**groups[1], "params": list(range(first, len(order_now)))}]}  # fmt: skip


def changed_arguments(args, saved):
    """'--name: old -> new' for each argument that changes the result and differs from the saved ones."""
    saved = vars(saved) if isinstance(saved, argparse.Namespace) else dict(saved or {})
    now = checkpoint_args(args)
    keys = sorted(
        k for k in now if k in saved and k not in RESULT_NEUTRAL_ARGS and not same_value(k, saved[k], now[k])
    )
    return [f"--{k}: {saved[k]!r} in the checkpoint, {now[k]!r} now" for k in keys]


PATH_ARGS = {"data_path", "finetune"}  # folders and files: another spelling of the same one is no change


def same_value(key, saved, now):
    """Equal, or for a path argument the same file or folder however written (data/ and data, ./data, a link)."""
    if saved == now:
        return True
    if key not in PATH_ARGS or not (isinstance(saved, str) and isinstance(now, str)) or not (saved and now):
        return False
    if saved.startswith("builtin") or now.startswith("builtin"):
        return False
    try:
        return os.path.samefile(saved, now)
    except OSError:  # one of them is gone: compare the spellings
        return os.path.normpath(os.path.abspath(saved)) == os.path.normpath(os.path.abspath(now))


CODE = {"solutions": "the reference code", "exercises": "your code in exercises/"}


def check_arguments(args, checkpoint, path, own, context, model_code=None):
    """Refuse to continue output_dir's run with arguments that would change its result (a new run pointed at
    a used folder), or with other model code (MAE_IMPL: the reference or the learner's); for an explicit --resume
    of another file, only say what differs."""
    checkpoint = checkpoint if isinstance(checkpoint, dict) else {}
    changes = changed_arguments(args, checkpoint.get("args"))
    saved_code = checkpoint.get("model_code")
    if saved_code in CODE and model_code in CODE and saved_code != model_code:
        changes.append(
            f"whose code trains (MAE_IMPL): {CODE[saved_code]} in the checkpoint, {CODE[model_code]} now"
        )
    if not changes:
        return
    listed = "\n  - " + "\n  - ".join(changes)
    if own and not args.allow_changed_args:
        raise ValueError(
            f"{args.output_dir} holds a run with other arguments ({path}):{listed}\nUse another --output_dir "
            f"for a new run, or pass --allow_changed_args to continue this one with the new values (a "
            f"deliberate change of --epochs, say)."
        )
    if context.is_main:
        print(f"note: continuing from {path} with arguments that differ from its own:{listed}", flush=True)


def checkpoint_args(args):
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
