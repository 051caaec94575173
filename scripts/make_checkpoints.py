"""Make the four small checkpoints that ship in checkpoints/, with this project's own pretraining.

    python scripts/make_checkpoints.py [name ...]     (make checkpoints; about 80 minutes on a CPU)

Each is `python -m mae.pretrain` on built-in data with the flags below, on the CPU, float32,
seeded; the last checkpoint is then reduced to what the notebooks need: the weights rounded
to float16 (half the size; far below what the pictures or the probes can show), the model
configuration, and the run's arguments and final loss. Training runs in output/checkpoints/
and resumes if interrupted. On the same torch build the result is the same bit for bit.
For the pixel-target photo model it then prints its error on removed patches against the
classical fills (mae.inpainting) and the held-out error of the checkpoints kept during the
run, against training minutes (also in output/checkpoints/<name>/curve.json). For the shifted-digits
model it prints notebook 11's comparison over three seeds (mae.shifted_digits).

Then the two classifiers of notebook 13 (robustness), fine-tuned in memory from that shifted-digits MAE and from
scratch (mae.shifted_digits.classifier: all 1,437 training digits, 600 steps, seed 0; a few minutes), each with
its validation accuracy and the class names python -m mae.robustness reads.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mae import pretrain  # noqa: E402
from mae.checkpoint import atomic_save, read_checkpoint  # noqa: E402

CPU = "--device cpu --num_workers 0".split()
# 64x64 crops of the 19 training photographs (`--data_path builtin`, images.TRAINING_PHOTOS): 64 patches of 8x8.
# 32 crops a step, 32 steps an epoch; one log line an epoch; checkpoint-<N>.pth kept every 15 epochs (the curve).
PHOTOS = [
    *("--model mae_vit_mini_patch8".split() + CPU),
    *"--data_path builtin --input_size 64 --batch_size 32 --epochs 150 --warmup_epochs 5 --lr 1.5e-3".split(),
    *"--save_every 256 --log_every 32 --save_epochs 15".split(),
]
RUNS = {
    # Pixel targets, as the official demo's visualisation checkpoints: the figure shows the model's own output,
    # and its error in pixels is compared with classical inpainting (mae.inpainting; notebook 10).
    "mae_mini_photos_pixels": PHOTOS,
    # The paper's normalised-pixel targets, side by side with the pixel one in notebook 10.
    "mae_mini_photos": [*PHOTOS, "--norm_pix_loss"],
    # scikit-learn's digits (training split only) at 32x32: 16 patches, for probing and fine-tuning (11, 12).
    "mae_mini_digits": [
        *("--model mae_vit_mini_patch8".split() + CPU),
        *"--norm_pix_loss --lr 1e-3 --warmup_epochs 2 --save_every 100 --log_every 20".split(),
        *"--data_path builtin:digits --input_size 32 --batch_size 32 --epochs 40".split(),
    ],
    # The same digits scaled 1.5-2.5x and placed anywhere on a 32x32 canvas (a new place every time): 64 patches of
    # 4x4, where raw pixels are a poor representation (notebook 11).
    "mae_mini_shifted_digits": [
        *("--model mae_vit_mini_patch4".split() + CPU),
        *"--data_path builtin:shifted-digits --input_size 32 --batch_size 64 --epochs 400 --warmup_epochs 10".split(),
        *"--lr 1.5e-3 --norm_pix_loss --save_minutes 5 --log_every 22 --save_epochs 100".split(),
    ],
}


def release(name, flags, work_dir, out_dir):
    args = pretrain.get_args_parser().parse_args([*flags, "--output_dir", str(work_dir / name)])
    start = time.perf_counter()
    pretrain.main(args)
    print(f"{name}: trained in {(time.perf_counter() - start) / 60:.1f} min (0 if it had finished before)")
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
    if args.data_path == "builtin" and not args.norm_pix_loss:  # pixel targets: scored in pixels
        report_reconstruction(name, work_dir / name, out_dir / f"{name}.pth")
    if args.data_path == "builtin:shifted-digits":
        report_shifted_digits(name, work_dir / name, out_dir / f"{name}.pth")


# Notebook 13's classifiers: name -> fine-tuned from the shifted-digits MAE (True) or from random weights (False).
CLASSIFIERS = {"shifted_digits_finetuned_mae": True, "shifted_digits_finetuned_scratch": False}
CLASSIFIER_SOURCE = "mae_mini_shifted_digits"


def release_classifier(name, pretrained, out_dir):
    from mae import shifted_digits as study
    from mae.evaluation import accuracy

    source = out_dir / f"{CLASSIFIER_SOURCE}.pth"
    start = time.perf_counter()
    model = study.classifier(source, pretrained, seed=0)
    _, (val_x, val_y) = study.splits(0)
    val_accuracy = accuracy(model, val_x, val_y)
    how = f"mae.shifted_digits.classifier({source.name if pretrained else 'random init'}, seed=0)"
    shipped = {
        "model": {k: v.half() for k, v in model.state_dict().items()},
        "class_names": [str(digit) for digit in range(10)],
        "made_by": f"python scripts/make_checkpoints.py ({name}: {how})",
        "val_accuracy": val_accuracy,
        "torch_version": str(torch.__version__),
    }
    atomic_save(shipped, out_dir / f"{name}.pth")
    rounded = accuracy(study.load_shipped_classifier(out_dir / f"{name}.pth"), val_x, val_y)
    print(f"{name}: validation accuracy {val_accuracy:.1%} ({rounded:.1%} after rounding to float16), "
          f"{(time.perf_counter() - start) / 60:.1f} min; {(out_dir / f'{name}.pth').stat().st_size / 1e6:.1f} MB")  # fmt: skip


def training_minutes(log, images_per_step):
    """Cumulative training time at each logged step, from the logged throughput: {step: minutes}.

    Only the optimizer steps count (not start-up, checkpoints or the per-epoch pictures), and a pause of the
    run (killed, then resumed) does not.
    """
    minutes, total, previous = {}, 0.0, 0
    for record in log:
        if record["kind"] == "train":
            total += (record["step"] - previous) * images_per_step / record["images_per_s"] / 60
            minutes[record["step"]], previous = total, record["step"]
    return minutes


def report_reconstruction(name, run_dir, shipped):
    """The shipped model against the classical fills, and the held-out error of every kept checkpoint-<N>.pth."""
    from mae import inpainting
    from mae.checkpoint import model_from_checkpoint

    for label, scores in inpainting.measure(model_from_checkpoint(shipped).eval()).items():
        print(f"{name}, {label}: " + ", ".join(f"{method} {mse:.4f}" for method, mse in scores.items()))
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    args = read_checkpoint(shipped)["args"]
    minutes = training_minutes(log, args["batch_size"] * args["accum_iter"])
    images, noise = inpainting.evaluation_set(inpainting.HELD_OUT_PHOTOS, 96)
    curve = []
    kept = sorted(run_dir.glob("checkpoint-[0-9]*.pth"), key=lambda p: int(p.stem.split("-")[1]))
    for path in kept:
        model = model_from_checkpoint(path).eval()
        step = read_checkpoint(path)["step"]
        mse = inpainting.compare(model, images, noise)[0]["MAE"]
        curve.append(
            {"epochs": int(path.stem.split("-")[1]) + 1, "step": step, "minutes": minutes[step], "mse": mse}
        )
        print(
            f"  after {curve[-1]['epochs']:4d} epochs ({step} steps, {minutes[step]:5.1f} min): held-out MSE {mse:.4f}"
        )
    (run_dir / "curve.json").write_text(json.dumps(curve, indent=1))


def report_shifted_digits(name, run_dir, shipped, seeds=(0, 1, 2)):
    """Notebook 11's numbers over three seeds: frozen features (k-NN, linear probe) and fine-tuning with 100 labels;
    then the frozen features of every kept checkpoint-<N>.pth (seed 0) against training minutes (curve.json)."""
    from mae import shifted_digits as study

    runs = [study.frozen(shipped, seed) for seed in seeds]
    for features in study.FEATURES:
        knn, probe = zip(*[run[features] for run in runs])
        print(
            f"{name}, frozen {features}: k-NN {study.mean_and_spread(knn)}, probe {study.mean_and_spread(probe)}"
        )
    for start, pretrained in zip(study.STARTS, (True, False), strict=True):
        accuracies = [study.finetune(shipped, seed, pretrained) for seed in seeds]
        print(
            f"{name}, fine-tuned {start}: {study.mean_and_spread(accuracies)} ({[round(a, 3) for a in accuracies]})"
        )
    pixels = [study.pixels_knn_few_labels(seed) for seed in seeds]
    print(f"{name}, raw pixels k-NN with the same 100 labels: {study.mean_and_spread(pixels)}")
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    args = read_checkpoint(shipped)["args"]
    minutes = training_minutes(log, args["batch_size"] * args["accum_iter"])
    curve = []
    for path in sorted(run_dir.glob("checkpoint-[0-9]*.pth"), key=lambda p: int(p.stem.split("-")[1])):
        step = read_checkpoint(path)["step"]
        knn, probe = study.frozen(path, seed=0)["MAE-pretrained"]
        curve.append({"epochs": int(path.stem.split("-")[1]) + 1, "step": step, "minutes": minutes[step],
                      "knn": knn, "probe": probe})  # fmt: skip
        print(f"  after {curve[-1]['epochs']:4d} epochs ({step} steps, {minutes[step]:5.1f} min): frozen MAE "
              f"features, seed 0: k-NN {knn:.1%}, linear probe {probe:.1%}")  # fmt: skip
    (run_dir / "curve.json").write_text(json.dumps(curve, indent=1))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    every = [*RUNS, *CLASSIFIERS]
    parser.add_argument("names", nargs="*", metavar="name", help=f"any of {', '.join(every)} (default: all)")
    parser.add_argument("--work-dir", type=Path, default=ROOT / "output" / "checkpoints")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "checkpoints")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in every]
    if (
        unknown
    ):  # checked here: argparse would test a default list against choices as one value (Python < 3.12)
        parser.error(f"unknown checkpoint {', '.join(unknown)}; the checkpoints are {', '.join(every)}")
    args.names = args.names or every
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    for name in args.names:
        if name in CLASSIFIERS:
            release_classifier(name, CLASSIFIERS[name], args.out_dir)
        else:
            release(name, RUNS[name], args.work_dir, args.out_dir)


if __name__ == "__main__":
    main()
