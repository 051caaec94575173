"""python -m mae.robustness: classifier checkpoints on the robustness benchmarks of the MAE paper's Table 3.

    python -m mae.robustness --model vit_base_patch16 --resume mae_finetuned_vit_base.pth \\
        --imagenet_c /data/imagenet-c --imagenet_a /data/imagenet-a --imagenet_r /data/imagenet-r \\
        --imagenet_sketch /data/imagenet-sketch/sketch --output_dir robustness

Each checkpoint (ours or an official fine-tuned file; several --resume give one column each, with one --model each
or one for all) is evaluated on every benchmark given: ImageNet-C (top-1 error per corruption and severity, the mCE
normalised by AlexNet's errors and the plain mean error), ImageNet-A and -R (the 1000-way logits restricted to their
200 classes), ImageNet-Sketch (1000 classes). mae.benchmarks has the layouts, subsets and arithmetic.

Every image is counted once across processes (torchrun or SLURM, as the other jobs), in mixed precision on GPUs,
with a progress bar; each set prints the official evaluation line. The output folder gets log.txt (one JSON line per
set), results.json (every figure) and results.md (the seed's table, one column per checkpoint), each written whole.
"""

import argparse
import functools
import json
from pathlib import Path

import torch
from PIL import Image

from . import benchmarks
from .checkpoint import load_classifier, read_checkpoint, replace_atomically, state_dict_from
from .classify import evaluate, report
from .data.files import class_folders, read_image
from .data.images import channel_stats
from .data.labelled import LabelledImages, eval_transform
from .engine import distributed
from .engine.flags import non_negative_int, positive_int, run_cli
from .engine.precision import amp_dtype
from .models import CLASSIFIERS, create_classifier

SETS = ("imagenet_c", "imagenet_a", "imagenet_r", "imagenet_sketch")


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resume", nargs="+", required=True,
                   help="classifier checkpoints (ours, or the official fine-tuned files): one column each")  # fmt: skip
    p.add_argument("--model", nargs="+", default=["vit_large_patch16"], choices=CLASSIFIERS,
                   help="the architecture of each checkpoint (one name: all of them)")  # fmt: skip
    p.add_argument("--imagenet_c", help="ImageNet-C: <root>/<corruption>/<severity 1-5>/<wnid>/*.JPEG")
    p.add_argument("--imagenet_a", help="ImageNet-A: <root>/<wnid>/*.jpg, 200 classes")
    p.add_argument("--imagenet_r", help="ImageNet-R: <root>/<wnid>/*.jpg, 200 classes")
    p.add_argument("--imagenet_sketch", help="ImageNet-Sketch: <root>/<wnid>/*.JPEG, 1000 classes")
    p.add_argument("--cls_token", action="store_false", dest="global_pool",
                   help="classify from the CLS token (a linear-probe checkpoint); default: mean of the patches")  # fmt: skip
    p.add_argument("--batch_size", type=positive_int, default=64)
    p.add_argument("--input_size", type=positive_int, default=224)
    p.add_argument("--num_workers", type=non_negative_int, default=None, help="default: as the training jobs")
    p.add_argument("--pin_mem", action="store_true", default=True)
    p.add_argument("--no_pin_mem", action="store_false", dest="pin_mem")
    p.add_argument(
        "--device", default="auto", help="auto (cuda if this process sees a GPU, else cpu), cuda, cpu"
    )
    p.add_argument("--amp", choices=("bf16", "fp16", "none"), default=None,
                   help="mixed precision (default: bf16 or fp16 on GPUs, none on CPUs)")  # fmt: skip
    p.add_argument("--output_dir", default="./output_dir")
    p.add_argument(
        "--dist_eval", action="store_true", help="accepted: evaluation is always split across processes"
    )
    return p


def check_args(args):
    """Flags that do not fit together, before any file is read."""
    if not any(getattr(args, name) for name in SETS):
        raise ValueError("give at least one benchmark: " + ", ".join(f"--{name}" for name in SETS))
    if len(args.model) not in (1, len(args.resume)):
        raise ValueError(f"{len(args.resume)} checkpoints and {len(args.model)} --model names: give one name for "
                         f"all, or one per checkpoint")  # fmt: skip
    models = args.model * len(args.resume) if len(args.model) == 1 else args.model
    names = [f"{model} ({Path(path).name})" for model, path in zip(models, args.resume, strict=True)]
    twins = sorted({name for name in names if names.count(name) > 1})
    if twins:
        raise ValueError(f"two checkpoints would share the column {twins[0]}: give them different file names")
    for name in SETS:
        if getattr(args, name) and not Path(getattr(args, name)).is_dir():
            raise FileNotFoundError(f"--{name} {getattr(args, name)}: no such folder")


# --------------------------------------------------------------------------- the sets


class Restricted(torch.nn.Module):
    """A classifier whose logits are those of `outputs` only (ImageNet-A/R's 200 classes): label j is outputs[j]."""

    def __init__(self, model, outputs):
        super().__init__()
        self.model, self.outputs = model, list(outputs)

    def forward(self, x):
        return benchmarks.restrict(self.model(x), self.outputs)


class Folder:
    """One evaluation set: a folder of class folders, each label the position of its class among `outputs`.
    `exact_size`: the (width, height) every image must have (ImageNet-C's crops), checked on the first image of each
    class before anything runs (reading every header would cost a pass over the files)."""

    def __init__(self, root, class_names, outputs, exact_size=None, flag=""):
        self.root = Path(root)
        classes, self.files, targets = class_folders(self.root)  # an empty class folder: an error naming it
        index = benchmarks.output_index(classes, class_names, f"{flag} {self.root}".strip())
        position = {output: j for j, output in enumerate(outputs)}
        outside = [name for name in classes if index[name] not in position]
        if outside:
            more = f" and {len(outside) - 5} more" if len(outside) > 5 else ""
            raise benchmarks.LayoutError(f"{flag} {self.root}: the class folder(s) {', '.join(outside[:5])}{more} "
                                         f"are not among this benchmark's {len(outputs)} classes")  # fmt: skip
        self.labels = [position[index[classes[t]]] for t in targets]
        if exact_size:
            firsts = {t: f for f, t in reversed(list(zip(self.files, targets, strict=True)))}.values()
            for path in firsts:
                try:
                    with Image.open(path) as image:
                        size = image.size
                except OSError as error:
                    raise benchmarks.LayoutError(f"{path} cannot be read as an image: {error}") from error
                if size != tuple(exact_size):
                    raise benchmarks.LayoutError(f"{path} is {size[0]}x{size[1]}: ImageNet-C's images are "
                                                 f"{exact_size[0]}x{exact_size[1]} crops")  # fmt: skip

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        return read_image(self.files[i])


def evaluate_folder(model, folder, args, context, dtype, crop_pct):
    """Top-1 and top-5 accuracy and the loss of `model` on `folder` (percent), each image counted once; an
    unreadable image is skipped and said (the figures are over the images read)."""
    data = argparse.Namespace(crop_pct=crop_pct, mean=channel_stats(3)[0], std=channel_stats(3)[1])
    images = LabelledImages(folder, folder.labels, eval_transform(data, args.input_size), "RGB")
    stats = evaluate(model, images, args, context, dtype)
    if stats["images"] == 0:
        raise benchmarks.LayoutError(f"{folder.root}: none of its {len(folder)} images could be read")
    if stats["images"] < len(folder) and context.is_main:
        print(f"warning: {folder.root}: {len(folder) - stats['images']} of {len(folder)} images could not be read "
              f"and are left out", flush=True)  # fmt: skip
    return stats


def crop_fraction(args):
    """The official evaluation transform: resize to input_size / 0.875 and centre-crop, or no margin above 224."""
    return 224 / 256 if args.input_size <= 224 else 1.0


def plan(args, class_names, context):
    """Every set to evaluate, its folders built and checked (class names, sizes) before anything runs, so that a
    bad folder fails at the start, on every process alike: {"imagenet_c": ({(corruption, severity): Folder},
    missing), name: (Folder, outputs)}."""
    every, sets = list(range(len(class_names))), {}
    if args.imagenet_c:
        try:
            found, missing = benchmarks.corruption_folders(args.imagenet_c), None
        except benchmarks.LayoutError as error:
            if not getattr(error, "present", None):
                raise
            found, missing = error.present, str(error)
            if context.is_main:
                print(f"warning: {missing}", flush=True)
        size = (benchmarks.IMAGENET_C_SIZE,) * 2
        sets["imagenet_c"] = ({key: Folder(root, class_names, every, size, "--imagenet_c") for key, root in sorted(found.items())}, missing)  # fmt: skip
    for name, subset in (("imagenet_a", "a"), ("imagenet_r", "r"), ("imagenet_sketch", None)):
        if not getattr(args, name):
            continue
        outputs = every
        if subset:
            _, synsets = benchmarks.subset(subset)
            lacking = [s for s in synsets if s not in class_names]
            if lacking:
                raise benchmarks.LayoutError(f"--{name}: the classifier lacks {len(lacking)} of the benchmark's "
                                             f"{len(synsets)} classes ({', '.join(lacking[:5])}"
                                             f"{' ...' if len(lacking) > 5 else ''})")  # fmt: skip
            outputs = [class_names.index(s) for s in synsets]
        sets[name] = (Folder(getattr(args, name), class_names, outputs, flag=f"--{name}"), outputs)
    return sets


def run_one(model, sets, args, context, dtype, log):
    """{set: figures} of one classifier on the sets of `plan`; `log(set, figures)` after each."""
    results = {}
    if "imagenet_c" in sets:
        folders, missing = sets["imagenet_c"]
        errors = {}
        for key, folder in _progress(context, list(folders.items()), "ImageNet-C"):
            # As they are: resized only when --input_size is not 224 (the 448-pixel ViT-H).
            stats = evaluate_folder(model, folder, args, context, dtype, crop_pct=1.0)
            errors[key] = 1 - stats["acc1"] / 100
        summary = benchmarks.corruption_summary(errors)
        summary["errors"] = {f"{name}/{severity}": 100 * e for (name, severity), e in sorted(errors.items())}
        summary["missing"] = missing
        results["imagenet_c"] = summary
        log("imagenet_c", summary)
        if context.is_main:
            mce = "needs all 15 corruptions" if summary["mce"] is None else f"{summary['mce']:.1f}"
            mean = "-" if summary["mean_error"] is None else f"{summary['mean_error']:.1f}"
            print(f"* ImageNet-C mCE {mce} (normalised by AlexNet) mean error {mean}", flush=True)
    for name in ("imagenet_a", "imagenet_r", "imagenet_sketch"):
        if name not in sets:
            continue
        folder, outputs = sets[name]
        if context.is_main:
            print(f"{name}: {len(folder):,} images, {len(outputs)} classes", flush=True)
        restricted = model if len(outputs) == model.head.out_features else Restricted(model, outputs)
        stats = evaluate_folder(restricted, folder, args, context, dtype, crop_pct=crop_fraction(args))
        if context.is_main:
            report(stats, stats["images"])
        results[name] = stats
        log(name, results[name])
    return results


def _progress(context, items, desc):
    if not context.is_main:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, leave=False)


# --------------------------------------------------------------------------- the table


ROWS = (  # (label, set, figure): the seed's rows
    ("ImageNet-Corruption mCE, AlexNet-normalised (lower is better)", "imagenet_c", "mce"),
    ("ImageNet-Corruption mean error, not normalised (lower is better)", "imagenet_c", "mean_error"),
    ("ImageNet-Adversarial top-1", "imagenet_a", "acc1"),
    ("ImageNet-Rendition top-1", "imagenet_r", "acc1"),
    ("ImageNet-Sketch top-1", "imagenet_sketch", "acc1"),
)


def markdown_table(columns):
    """The seed's robustness table, one column per checkpoint: {column name: run_one's results}."""
    lines = ["| | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for label, name, figure in ROWS:
        if not any(name in results for results in columns.values()):
            continue
        cells = [results.get(name, {}).get(figure) for results in columns.values()]
        lines.append(f"| {label} | " + " | ".join("-" if c is None else f"{c:.1f}" for c in cells) + " |")
    return "\n".join(lines) + "\n"


def write_text(path, text):
    def write(tmp):
        Path(tmp).write_text(text)

    replace_atomically(path, write)


# --------------------------------------------------------------------------- the run


def classes_of(path):
    """Output i's class, for each output of the checkpoint's head: the checkpoint's class_names (ours record them),
    else the sorted ImageNet-1k synsets for a 1000-way head (the official checkpoints')."""
    checkpoint = read_checkpoint(path)
    weights = state_dict_from(checkpoint, path)
    if "head.weight" not in weights:
        raise ValueError(f"{path} has no head.weight: a classifier checkpoint is needed (fine-tuned or probed), "
                         f"not an encoder")  # fmt: skip
    num_classes = weights["head.weight"].shape[0]
    names = checkpoint.get("class_names") if isinstance(checkpoint, dict) else None
    if names:
        names = list(names)
    elif num_classes == 1000:
        names = benchmarks.imagenet_synsets()
    else:
        raise ValueError(f"{path} has a {num_classes}-way head and records no class names: it cannot be mapped to "
                         f"ImageNet's classes (a checkpoint fine-tuned here records them)")  # fmt: skip
    if len(names) != num_classes:
        raise ValueError(f"{path} names {len(names)} classes but its head has {num_classes} outputs")
    return names


def main(argv=None):
    args = argv if isinstance(argv, argparse.Namespace) else get_args_parser().parse_args(argv)
    check_args(args)
    context = distributed.init(args.device)
    try:
        output = Path(args.output_dir)
        if context.is_main:
            output.mkdir(parents=True, exist_ok=True)
        dtype = amp_dtype(args, context.device)
        models = args.model * len(args.resume) if len(args.model) == 1 else args.model
        # Every checkpoint's classes and every folder checked before the first image is evaluated.
        runs = []
        for path, architecture in zip(args.resume, models, strict=True):
            class_names = classes_of(path)
            runs.append((path, architecture, class_names, plan(args, class_names, context)))
        columns, lines = {}, []
        for path, architecture, class_names, sets in runs:
            model = create_classifier(architecture, num_classes=len(class_names), global_pool=args.global_pool,
                                      img_size=args.input_size)  # fmt: skip
            load_classifier(model, path)
            model.to(context.device)
            column = f"{architecture} ({Path(path).name})"
            if context.is_main:
                print(f"{column}: {len(class_names)} classes", flush=True)

            def log(name, figures, column=column):
                lines.append(json.dumps({"checkpoint": column, "set": name, **figures}))
                if context.is_main:  # after each set: hours of ImageNet-C are not lost to a later failure
                    write_text(output / "log.txt", "\n".join(lines) + "\n")

            columns[column] = run_one(model, sets, args, context, dtype, log)
            if context.is_main:
                write_text(output / "results.json", json.dumps(columns, indent=1) + "\n")
                write_text(output / "results.md", markdown_table(columns))
        if context.is_main:
            print(markdown_table(columns), flush=True)
        return columns
    finally:
        distributed.finish(context)


cli = functools.partial(run_cli, main)  # the console script


if __name__ == "__main__":
    cli()
