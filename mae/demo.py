"""The main job: pretrain a small MAE on the bundled photographs on a CPU, then draw what it learned.

    python -m mae.demo --output-dir output/demo          (about 2 minutes on 2 CPU cores)

Writes output/demo/checkpoint-last.pth, loss.png (the loss curve) and reconstruction.png
(held-out crops: original, masked, reconstruction, reconstruction with the visible patches).
Running it again resumes from the checkpoint, or does nothing if the run is finished.
"""

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from . import pretrain  # noqa: E402
from .checkpoint import model_from_checkpoint  # noqa: E402
from .data import photo_crops  # noqa: E402
from .visualize import show_reconstruction  # noqa: E402


def plot_loss(log_path, path):
    records = [json.loads(line) for line in Path(log_path).read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot([r["step"] for r in train], [r["loss"] for r in train])
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss on masked patches")
    ax.set_title("MAE pretraining on the bundled photographs", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return train


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=Path("output/demo"))
    parser.add_argument("--epochs", type=int, default=6, help="64 steps of 16 crops each")
    parser.add_argument("--model", default="mae_vit_tiny_patch8")
    args, extra = parser.parse_known_args(argv)

    torch.set_num_threads(min(torch.get_num_threads(), 2))
    train_args = pretrain.get_args_parser().parse_args([
        "--model", args.model, "--input_size", "64", "--data_path", "builtin", "--device", "cpu",
        "--batch_size", "16", "--epochs", str(args.epochs), "--warmup_epochs", "1", "--lr", "1e-3",
        "--num_workers", "0", "--save_every", "50", "--log_every", "8", "--output_dir", str(args.output_dir), *extra,
    ])  # fmt: skip
    pretrain.main(train_args)

    train = plot_loss(args.output_dir / "log.jsonl", args.output_dir / "loss.png")
    model = model_from_checkpoint(args.output_dir / "checkpoint-last.pth").eval()
    held_out = photo_crops(4, size=64, seed=1234)  # crops the run never drew
    noise = torch.rand(4, model.patch_embed.num_patches, generator=torch.Generator().manual_seed(0))
    fig = show_reconstruction(model, held_out, mask_ratio=0.75, noise=noise, rows=4)
    fig.savefig(args.output_dir / "reconstruction.png", dpi=100)
    print(f"loss {train[0]['loss']:.3f} -> {train[-1]['loss']:.3f} in {train[-1]['step']} steps")
    print(f"wrote {args.output_dir / 'loss.png'} and {args.output_dir / 'reconstruction.png'}")


if __name__ == "__main__":
    main()
