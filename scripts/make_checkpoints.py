"""Make the two small checkpoints that ship in checkpoints/, with this project's own pretraining.

    python scripts/make_checkpoints.py          (make checkpoints; about 8 minutes on 2 CPU cores)

Each is `python -m mae.pretrain` on built-in data with the flags below, on the CPU, float32,
seeded; the last checkpoint is then reduced to what the notebooks need: the weights rounded
to float16 (half the size; far below what the pictures or the probes can show), the model
configuration, and the run's arguments and final loss. Training runs in output/checkpoints/
and resumes if interrupted. On the same torch build the result is the same bit for bit.
"""

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mae import pretrain  # noqa: E402
from mae.checkpoint import atomic_save, read_checkpoint  # noqa: E402

COMMON = ["--model", "mae_vit_mini_patch8", "--device", "cpu", "--num_workers", "0", "--norm_pix_loss",
          "--lr", "1e-3", "--warmup_epochs", "2", "--save_every", "100", "--log_every", "20"]  # fmt: skip
RUNS = {
    # 64x64 crops of scikit-image's photographs: 64 patches of 8x8, for the reconstruction demo (notebook 10).
    "mae_mini_photos": [
        *COMMON,
        "--data_path",
        "builtin",
        "--input_size",
        "64",
        "--batch_size",
        "16",
        "--epochs",
        "20",
    ],  # fmt: skip
    # scikit-learn's digits (training split only) at 32x32: 16 patches, for probing and fine-tuning (11, 12).
    "mae_mini_digits": [
        *COMMON,
        "--data_path",
        "builtin:digits",
        "--input_size",
        "32",
        "--batch_size",
        "32",
        "--epochs",
        "40",
    ],  # fmt: skip
}


def release(name, flags, work_dir, out_dir):
    args = pretrain.get_args_parser().parse_args([*flags, "--output_dir", str(work_dir / name)])
    pretrain.main(args)
    checkpoint = read_checkpoint(work_dir / name / "checkpoint-last.pth")
    log = [json.loads(line) for line in (work_dir / name / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if r["kind"] == "train"]
    shipped = {
        "model": {k: v.half() for k, v in checkpoint["model"].items()},
        "model_config": checkpoint["model_config"],
        "args": checkpoint["args"],
        "made_by": f"python scripts/make_checkpoints.py ({name}: python -m mae.pretrain {' '.join(flags)})",
        "train_loss": {"first": losses[0], "last": losses[-1], "steps": checkpoint["step"]},
        "torch_version": str(torch.__version__),
    }
    atomic_save(shipped, out_dir / f"{name}.pth")
    size = (out_dir / f"{name}.pth").stat().st_size
    print(
        f"{name}: loss {losses[0]:.3f} -> {losses[-1]:.3f} in {checkpoint['step']} steps; {size / 1e6:.1f} MB"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(RUNS), help=f"any of {', '.join(RUNS)}")
    parser.add_argument("--work-dir", type=Path, default=ROOT / "output" / "checkpoints")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "checkpoints")
    args = parser.parse_args(argv)
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    for name in args.names:
        release(name, RUNS[name], args.work_dir, args.out_dir)


if __name__ == "__main__":
    main()
