"""The main job, for now: build an MAE, mask a bundled photograph at several ratios, save the figure.

python -m mae.demo --output-dir output/demo
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import torch  # noqa: E402

from .data import sample_photo, to_tensor  # noqa: E402
from .models import create_model  # noqa: E402
from .visualize import show_masking  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mae_vit_base_patch16")
    parser.add_argument("--image", default="astronaut")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.25, 0.5, 0.75, 0.9])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", type=Path, default=Path("output/demo"))
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    model = create_model(args.model).eval()
    imgs = to_tensor(sample_photo(args.image), size=model.patch_embed.img_size[0])
    fig = show_masking(model, imgs, args.ratios, seed=args.seed)
    fig.suptitle(f"{args.model}: the encoder sees only the unmasked patches", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    args.output_dir.mkdir(parents=True, exist_ok=True)
    path = args.output_dir / "masking.png"
    fig.savefig(path, dpi=100)
    with torch.no_grad():
        loss, _, _ = model(imgs, mask_ratio=args.ratios[-1])
    parameters = sum(p.numel() for p in model.parameters()) / 1e6
    print(
        f"{args.model}: {parameters:.1f}M parameters; untrained loss at ratio {args.ratios[-1]}: {loss.item():.3f}"
    )
    print(f"saved {path}")


if __name__ == "__main__":
    main()
