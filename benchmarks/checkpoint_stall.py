"""The training-loop stall of a checkpoint: a synchronous save against mae.engine's background writer.

    python benchmarks/checkpoint_stall.py --model mae_vit_large_patch16 [--device cuda] [--json out.json]

The training thread is held by a synchronous save for the whole torch.save and fsync; with the background writer
only for the copy of the state into host buffers (on a GPU, the queueing of that copy). A stand-in loop runs beside
the background write to show how much the write slows the training thread (docs/performance.md).
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's mae, when run from a clone
from mae.checkpoint import save_checkpoint  # noqa: E402
from mae.engine.background_writer import BackgroundWriter  # noqa: E402
from mae.models import create_model  # noqa: E402


def training_state(model_name, device="cpu"):
    """A model and an AdamW optimizer whose state is filled (one step on zero gradients: no forward pass)."""
    model = create_model(model_name).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95))
    for param in model.parameters():
        param.grad = torch.zeros_like(param)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return model, optimizer


def busy_work(seconds, size=256):
    """Steps of a stand-in training loop (small matrix products and Python between them) for `seconds`; returns
    the steps per second, to see how much a background write slows the loop beside it."""
    a = torch.randn(size, size)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a = torch.tanh(a @ a.T / size)
        steps += 1
    return steps / (time.perf_counter() - start)


def timed_write(path, written):
    """A write function for BackgroundWriter.save that notes when it ended."""

    def write(model, extra):
        save_checkpoint(path, model, **extra)
        written.append(time.perf_counter())

    return write


def measure(model_name, folder, rounds=2, alone_seconds=2.0, device="cpu"):
    """Seconds the training thread is held by a synchronous save and by a background one, and how fast a
    stand-in loop runs beside the background write (relative to alone). On a GPU the state lives there, and the
    snapshot is the copy into pinned host buffers that the training thread only queues."""
    model, optimizer = training_state(model_name, device)
    path = Path(folder) / "checkpoint-last.pth"
    size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    size += sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values())
    extra = lambda: dict(optimizer=optimizer.state_dict(), step=1)  # noqa: E731
    result = {"model": model_name, "device": str(device), "state_gb": size / 1e9, "sync_s": [], "blocked_first_s": [], "blocked_s": [], "write_s": [],
              "gpu_copy_s": [], "loop_alone": busy_work(alone_seconds), "loop_during_write": []}  # fmt: skip
    for _ in range(rounds):
        start = time.perf_counter()
        save_checkpoint(path, model, **extra())
        result["sync_s"].append(time.perf_counter() - start)
        writer = BackgroundWriter()
        for first_snapshot in (True, False):  # the first allocates the host buffers; later ones reuse them
            written = []  # when the background write ended
            start = time.perf_counter()
            writer.save(timed_write(path, written), model, extra())
            blocked = time.perf_counter() - start
            if (
                torch.device(device).type == "cuda"
            ):  # the copy itself runs on the GPU's stream, after `blocked`
                torch.cuda.synchronize()
                result["gpu_copy_s"].append(time.perf_counter() - start)
            rate = [busy_work(0.2)]
            while writer.pending:
                rate.append(busy_work(0.2))
            writer.wait()
            if first_snapshot:
                result["blocked_first_s"].append(blocked)
            else:
                result["blocked_s"].append(blocked)
                result["write_s"].append(written[0] - start)
                result["loop_during_write"].append(sum(rate) / len(rate))
        del writer
    return result


def main(argv=None):
    p = argparse.ArgumentParser(
        description="the training-loop stall of a checkpoint: synchronous vs background"
    )
    p.add_argument("--model", default="mae_vit_large_patch16")
    p.add_argument("--folder", default=None, help="where to write (default: a temporary folder)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--device", default="cpu", help="where the model and its optimizer live (cpu, cuda)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
        result = measure(args.model, folder, args.rounds, device=args.device)
    print(f"{result['model']} on {result['device']}: {result['state_gb']:.2f} GB of weights and AdamW state")
    print(f"  synchronous save, training blocked (s):    {', '.join(f'{s:.2f}' for s in result['sync_s'])}")
    print(
        f"  background save, training blocked (s):     {', '.join(f'{s:.2f}' for s in result['blocked_s'])} "
        f"(the first, which allocates the buffers: {', '.join(f'{s:.2f}' for s in result['blocked_first_s'])})"
    )
    if result["gpu_copy_s"]:  # what the GPU's stream spends copying, which the next step queues behind
        print(
            f"  background save, the copy from the GPU (s): {', '.join(f'{s:.2f}' for s in result['gpu_copy_s'])}"
        )
    print(f"  background save, until written (s):        {', '.join(f'{s:.2f}' for s in result['write_s'])}")
    during = ", ".join(f"{r / result['loop_alone']:.2f}" for r in result["loop_during_write"])
    print(f"  a stand-in loop beside the write, speed:   {during} of its speed alone")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
