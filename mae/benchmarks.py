"""The robustness benchmarks of the MAE paper's Table 3 (ImageNet-C, -A, -R, -Sketch): their layouts, their class
subsets and their arithmetic, which a test can check by hand. `python -m mae.robustness` runs a classifier on them.

- ImageNet-C (Hendrycks & Dietterich 2019): 15 benchmark corruptions at 5 severities, in
  `<root>/<corruption>/<severity>/<wnid>/*.JPEG` (4 extra corruptions may sit beside them). A corruption's error is
  its top-1 error averaged over the 5 severities. The paper's number is the **mCE**: each corruption's error divided
  by AlexNet's on the same corruption (the published table below), averaged over the 15, in percent; the plain mean
  error (not normalised) is reported beside it, since both readings circulate (facebookresearch/mae#104).
- ImageNet-A and ImageNet-R: 200 of the 1000 classes. The 1000-way logits are restricted to those 200 and the
  arg-max taken among them; the subsets are timm's lists (timm/data/_info/imagenet_[ar]_*.txt), not typed here.
- ImageNet-Sketch: the 1000 classes, `<root>/<wnid>/*.JPEG`.

Class order: the official checkpoints' output i is the i-th of the 1000 ImageNet-1k synsets in sorted order (as
ImageFolder gives them: timm's imagenet_synsets.txt). A benchmark's folders are mapped to outputs by name.
"""

from importlib import resources
from pathlib import Path

# The 15 benchmark corruptions, in the benchmark's order (noise, blur, weather, digital), and the 4 held-out ones.
CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness",
    "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)  # fmt: skip
EXTRA_CORRUPTIONS = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
SEVERITIES = (1, 2, 3, 4, 5)
IMAGENET_C_SIZE = (
    224  # ImageNet-C's images: the validation images resized to 256 and centre-cropped, corrupted
)

# AlexNet's top-1 error on each benchmark corruption, averaged over the 5 severities: the normaliser of the mCE, as
# published with the benchmark (Hendrycks & Dietterich 2019, and their repository's evaluation script).
ALEXNET_ERROR = {
    "gaussian_noise": 0.886428, "shot_noise": 0.894468, "impulse_noise": 0.922640,
    "defocus_blur": 0.819880, "glass_blur": 0.826268, "motion_blur": 0.785948, "zoom_blur": 0.798360,
    "snow": 0.866816, "frost": 0.826572, "fog": 0.819324, "brightness": 0.564592,
    "contrast": 0.853204, "elastic_transform": 0.646056, "pixelate": 0.717840, "jpeg_compression": 0.606500,
}  # fmt: skip


class LayoutError(ValueError):
    """A benchmark folder that is not in its distributed layout; the message names what is missing."""


def _timm_list(name):
    """The lines of one of timm's ImageNet files (timm/data/_info/<name>)."""
    text = resources.files("timm.data").joinpath("_info", name).read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]


def imagenet_synsets():
    """The 1000 ImageNet-1k WordNet ids in sorted order: output i of an ImageNet classifier is synsets[i]."""
    synsets = _timm_list("imagenet_synsets.txt")
    if synsets != sorted(synsets) or len(synsets) != 1000:
        raise RuntimeError("timm's imagenet_synsets.txt is not the 1000 sorted ImageNet-1k synsets")
    return synsets


def subset(name):
    """(indices into the 1000 outputs, their synsets) of ImageNet-A ("a") or ImageNet-R ("r"), from timm's lists,
    checked against each other: index i is the i-th sorted ImageNet-1k synset."""
    if name not in ("a", "r"):
        raise ValueError(f"ImageNet subsets are 'a' and 'r', got {name!r}")
    indices = [int(line) for line in _timm_list(f"imagenet_{name}_indices.txt")]
    synsets = _timm_list(f"imagenet_{name}_synsets.txt")
    every = imagenet_synsets()
    if len(indices) != 200 or [every[i] for i in indices] != synsets:
        raise RuntimeError(f"timm's imagenet_{name}_indices.txt and imagenet_{name}_synsets.txt disagree")
    return indices, synsets


def restrict(logits, indices):
    """The logits of the subset's classes only, (B, 1000) -> (B, len(indices)): its arg-max is the prediction among
    the subset (a class outside it can never win), and label j is the subset's j-th class."""
    if logits.ndim != 2 or logits.shape[1] <= max(indices):
        raise ValueError(f"expected (batch, classes) logits over at least {max(indices) + 1} classes, "
                         f"got {tuple(logits.shape)}")  # fmt: skip
    return logits[:, list(indices)]


def output_index(folders, class_names, where):
    """{folder name: output index} for a benchmark's class folders, matched by name against the classifier's
    class_names (output i is class_names[i]); a folder that names no class is an error naming it."""
    position = {name: i for i, name in enumerate(class_names)}
    unknown = sorted(set(folders) - set(position))
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise LayoutError(f"{where}: the class folder(s) {shown} match no class of the classifier "
                          f"({len(class_names)} classes, {class_names[0]} to {class_names[-1]})")  # fmt: skip
    return {folder: position[folder] for folder in folders}


def corruption_folders(root):
    """{(corruption, severity): folder} of an ImageNet-C root: every benchmark corruption at every severity, and
    the extra corruptions present. A missing benchmark corruption or severity raises LayoutError naming each one
    (with the folders that are there, so that the errors they allow can still be computed: `present`)."""
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(f"{root} is not a folder: expected ImageNet-C's <root>/<corruption>/<1-5>/<wnid>/")
    found = {
        (name, severity): root / name / str(severity)
        for name in (*CORRUPTIONS, *EXTRA_CORRUPTIONS)
        for severity in SEVERITIES
        if (root / name / str(severity)).is_dir()
    }
    if not found:
        nested = [group for group in ("noise", "blur", "weather", "digital") if (root / group).is_dir()]
        hint = (f" (it has {', '.join(nested)}/ folders: point at the folder that holds the corruptions, or move "
                f"them up one level)" if nested else "")  # fmt: skip
        raise LayoutError(
            f"{root} holds none of ImageNet-C's corruption folders ({CORRUPTIONS[0]}/1/, ...){hint}"
        )
    missing = [
        f"{name}/{severity}"
        for name in CORRUPTIONS
        for severity in SEVERITIES
        if (name, severity) not in found
    ]
    if missing:
        absent = [name for name in CORRUPTIONS if all((name, s) not in found for s in SEVERITIES)]
        partial = [m for m in missing if m.split("/")[0] not in absent]
        parts = ([f"corruptions {', '.join(absent)}"] if absent else []) + (
            [f"severities {', '.join(partial)}"] if partial else [])  # fmt: skip
        error = LayoutError(f"{root} lacks {'; '.join(parts)}: the mCE needs all 15 benchmark corruptions at "
                            f"severities 1-5 (the errors of the others are still computed)")  # fmt: skip
        error.present = found
        raise error
    return found


def corruption_summary(errors, baseline=None, clean_error=None):
    """The ImageNet-C figures from `errors` = {(corruption, severity): top-1 error as a fraction}.

    Returns {"corruption_error": {c: mean error over its severities}, "ce": {c: that / the baseline's} (benchmark
    corruptions only), "mce": mean of the 15 ce in percent (None unless all 15 have all 5 severities),
    "mean_error": mean of the 15 corruption errors in percent (the unnormalised reading; None likewise),
    "extra_error": {c: mean error} of the extra corruptions present}. Percentages, as the paper's tables.

    `baseline`: {corruption: the baseline model's error averaged over the 5 severities}; None is AlexNet's (the
    benchmark's mCE). A lesson's own baseline is `corruption_summary(its errors)["corruption_error"]` in fractions:
    `baseline_errors(errors)`. With `clean_error` = (this model's error on the clean images, the baseline's), also
    "relative_ce": {c: (corruption error - clean error) / (the baseline's - its clean error)} and "relative_mce",
    their mean in percent: how much each model *loses* to the corruption, whatever its clean error (None for a
    corruption the baseline loses nothing to, and then no relative mCE)."""
    baseline = ALEXNET_ERROR if baseline is None else baseline
    for name, error in {
        **baseline,
        **dict(zip(("clean error", "baseline clean error"), clean_error or ())),
    }.items():
        if not 0.0 <= error <= 1.0:
            raise ValueError(f"{name}: a baseline or clean error is a fraction from 0 to 1, got {error}")
    by_corruption = {}
    for (name, severity), error in errors.items():
        if not 0.0 <= error <= 1.0:
            raise ValueError(f"{name}/{severity}: an error is a fraction from 0 to 1, got {error}")
        by_corruption.setdefault(name, {})[severity] = error
    complete = {name: s for name, s in by_corruption.items() if sorted(s) == list(SEVERITIES)}
    corruption_error = {name: sum(s.values()) / len(s) for name, s in complete.items()}
    ce = {name: corruption_error[name] / baseline[name] for name in CORRUPTIONS if name in corruption_error}
    every = len(ce) == len(CORRUPTIONS)
    summary = {
        "corruption_error": {name: 100 * e for name, e in corruption_error.items()},
        "ce": {name: 100 * v for name, v in ce.items()},
        "mce": 100 * sum(ce.values()) / len(ce) if every else None,
        "mean_error": 100 * sum(corruption_error[name] for name in CORRUPTIONS) / len(CORRUPTIONS)
        if every
        else None,
        "extra_error": {
            name: 100 * corruption_error[name] for name in EXTRA_CORRUPTIONS if name in corruption_error
        },
    }
    if clean_error is not None:
        clean, baseline_clean = clean_error
        # A corruption the baseline loses nothing to (or gains from) has no relative CE: None, and no relative mCE.
        relative = {name: (corruption_error[name] - clean) / (baseline[name] - baseline_clean)
                    if baseline[name] > baseline_clean else None for name in ce}  # fmt: skip
        summary["relative_ce"] = {name: None if v is None else 100 * v for name, v in relative.items()}
        defined = every and None not in relative.values()
        summary["relative_mce"] = 100 * sum(relative.values()) / len(relative) if defined else None
    return summary


def baseline_errors(errors):
    """{corruption: error averaged over its 5 severities, a fraction}: a model's `errors` as another's baseline."""
    return {name: e / 100 for name, e in corruption_summary(errors)["corruption_error"].items()}
