"""The main job: pretrain a small MAE on the bundled photographs on a CPU, then show what it learned, in numbers.

    python -m mae.demo --output-dir output/demo          (about 3 minutes on 2 CPU cores)

Writes output/demo/checkpoint-last.pth, loss.png (the loss curve), reconstruction.png (crops of
photographs the run never saw: original, masked, reconstruction, reconstruction with the visible
patches) and inpainting.png (the same crops filled by biharmonic inpainting and by the MAE), and
prints the error on the removed pixels of the MAE, the mean-colour fill and biharmonic inpainting
(mae.inpainting). Running it again resumes from the checkpoint, or does nothing if the run is finished.
"""

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from . import inpainting, pretrain  # noqa: E402
from .checkpoint import model_from_checkpoint, read_checkpoint  # noqa: E402
from .data.images import normalize  # noqa: E402
from .engine.flags import run_cli  # noqa: E402
from .engine.resume import CODE  # noqa: E402
from .visualize import show_inpainting, show_reconstruction  # noqa: E402


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


def verdict(scores):
    """One sentence: where the MAE stands against the two classical fills."""
    mae, mean, biharmonic = scores["MAE"], scores["mean colour"], scores["biharmonic"]
    against_mean = "beats" if mae < mean else "does not beat"
    if mae < biharmonic:
        return f"the MAE {against_mean} the mean-colour fill and beats biharmonic inpainting by {1 - mae / biharmonic:.0%}"
    return f"the MAE {against_mean} the mean-colour fill; its error is {mae / biharmonic - 1:.0%} above biharmonic inpainting"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=Path("output/demo"))
    parser.add_argument("--epochs", type=int, default=20, help="32 steps of 32 crops each")
    parser.add_argument("--model", default="mae_vit_mini_patch8")
    args, extra = parser.parse_known_args(argv)

    torch.set_num_threads(min(torch.get_num_threads(), 2))
    # Pixel targets (no --norm_pix_loss): what the figures draw and the numbers score is the model's own output.
    train_args = pretrain.get_args_parser().parse_args([
        "--model", args.model, "--input_size", "64", "--data_path", "builtin", "--device", "cpu",
        "--batch_size", "32", "--epochs", str(args.epochs), "--warmup_epochs", "1", "--lr", "1.5e-3",
        "--num_workers", "0", "--save_every", "64", "--log_every", "8", "--output_dir", str(args.output_dir), *extra,
    ])  # fmt: skip
    pretrain.main(train_args)

    train = plot_loss(args.output_dir / "log.jsonl", args.output_dir / "loss.png")
    model = model_from_checkpoint(args.output_dir / "checkpoint-last.pth").eval()
    # Crops of whole photographs that the run never saw, with the same masks for every method.
    images, noise = inpainting.evaluation_set(inpainting.HELD_OUT_PHOTOS, count=96)
    scores, fills, mask = inpainting.compare(model, images, noise)
    fig = show_reconstruction(model, normalize(images), mask_ratio=0.75, noise=noise, rows=4)
    fig.savefig(args.output_dir / "reconstruction.png", dpi=100)
    shown = {name: fills[name] for name in ("biharmonic", "MAE")}
    fig = show_inpainting(images, shown, mask, scores=scores, rows=4)
    fig.savefig(args.output_dir / "inpainting.png", dpi=100)
    trained_by = read_checkpoint(args.output_dir / "checkpoint-last.pth").get("model_code", "solutions")
    print(f"trained with {CODE[trained_by]} (MAE_IMPL={trained_by})")
    print(f"loss {train[0]['loss']:.3f} -> {train[-1]['loss']:.3f} in {train[-1]['step']} steps")
    print(
        f"error on the removed pixels of {len(images)} crops of photographs the run never saw "
        f"({', '.join(inpainting.HELD_OUT_PHOTOS)}; MSE, pixels in [0, 1]):"
    )
    for name, mse in scores.items():
        print(f"  {name:12s} {mse:.4f}")
    print(verdict(scores))
    print(
        f"wrote {', '.join(str(args.output_dir / f) for f in ('loss.png', 'reconstruction.png', 'inpainting.png'))}"
    )


def cli(argv=None):
    run_cli(main, argv)  # bad input (a folder trained by other code, say) ends with its message alone


if __name__ == "__main__":
    cli()
