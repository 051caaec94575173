"""ImageNet-C's corruptions applied to images in memory, a classifier's error under each of them, and their
pictures.

`python -m mae.robustness` reads ImageNet-C as it is distributed: 50,000 validation images already corrupted, in
folders. A model that does not see 224-pixel ImageNet photographs (the course's 32x32 digits) has no such folders,
so here the same corruption functions are applied to its own validation images: 15 corruptions (and the 4 extra
ones) at 5 severities. The table of errors this returns is the one the job builds from the folders, and
`mae.benchmarks.corruption_summary` turns either into corruption errors and the mCE.

The functions are Hendrycks and Dietterich's, as packaged for images of any size (32 pixels or more) by
imagecorruptions-imaug, the maintained fork of `imagecorruptions` (whose last release, 1.1.2, calls
scikit-image's `gaussian(multichannel=True)` in glass and Gaussian blur, which scikit-image 0.26 refuses: tried). Their
parameters are in pixels and were chosen for 224-pixel photographs, so on a smaller image a blur or an elastic
warp covers more of the picture than it does on ImageNet-C.

Each set (one corruption at one severity) is drawn from its own seed: the functions draw from numpy's global
generator, which is seeded for the set and restored afterwards, and the two that take a seed of their own
(glass blur, impulse noise) get one. The corrupted images are a function of (seed, corruption, severity) and of
each image's place in the batch (the i-th image gets the i-th draws), so the same batch is always corrupted alike.

A one-channel image goes through the functions as a grey RGB image and comes back as its luma. The noise
corruptions draw each channel's noise independently, so the luma's is weaker than one channel's (Gaussian noise:
about 0.67 of its standard deviation; impulse noise: more pixels hit, by less); on a colour photograph all of it
stays.
"""

import importlib

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import PercentFormatter

from .benchmarks import CORRUPTIONS, SEVERITIES
from .data.images import denormalize
from .i18n import N_, _

INSTALL_HINT = "pip install 'mae-from-scratch[course]' (or pip install imagecorruptions-imaug)"
# These two take a seed of their own; the others draw from numpy's global generator.
SEEDED = ("glass_blur", "impulse_noise")
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as PIL's convert("L"): a corrupted RGB image back to one channel


def corruption_functions():
    """The `imagecorruptions` package (imported when first used: it compiles glass blur with numba)."""
    try:
        return importlib.import_module("imagecorruptions")
    except ImportError as error:
        raise ImportError(_("the corruption functions are not installed: {hint}").format(hint=INSTALL_HINT)) from error  # fmt: skip


def seed_of_set(seed, corruption, severity):
    """One 32-bit seed per (seed, corruption, severity), independent of the order the sets are drawn in."""
    names = sorted(corruption_functions().get_corruption_names("all"))
    if corruption not in names:
        raise ValueError(_("unknown corruption {name!r}; the corruptions are: {names}").format(
            name=corruption, names=", ".join(names)))  # fmt: skip
    entropy = [seed, names.index(corruption), severity]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def corrupt(images, corruption, severity, seed=0):
    """(N, C, H, W) images in [0, 1], C = 1 or 3, H and W at least 32 -> the same images corrupted, in [0, 1].

    Each image goes through the function as ImageNet-C's did, in 8-bit RGB (one channel repeated three times), so
    the result has ImageNet-C's 256 levels per channel; one channel comes back as the luma of the three."""
    if not images.is_floating_point():
        raise ValueError(_("corrupt takes float images in [0, 1], got {dtype}").format(dtype=images.dtype))
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(_("corrupt takes images (N, C, H, W) with 1 or 3 channels, got shape {shape}").format(
            shape=tuple(images.shape)))  # fmt: skip
    if min(images.shape[-2:]) < 32:
        raise ValueError(_("the corruption functions need images of at least 32x32 pixels, got {h}x{w}").format(
            h=images.shape[-2], w=images.shape[-1]))  # fmt: skip
    if severity not in SEVERITIES:
        raise ValueError(_("a severity is one of 1 to 5, got {severity!r}").format(severity=severity))
    if not len(images):
        return images.clone()
    low, high = images.min().item(), images.max().item()
    if (
        low < -1e-4 or high > 1 + 1e-4
    ):  # rounding aside: normalised images (ImageNet's mean and std) are not these
        raise ValueError(_("corrupt takes images in [0, 1] (before normalisation), got values from {low:.3g} to "
                           "{high:.3g}").format(low=low, high=high))  # fmt: skip
    package = corruption_functions()
    set_seed = seed_of_set(seed, corruption, severity)
    pixels = (images.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8)  # (N, C, H, W)
    pixels = pixels.expand(-1, 3, -1, -1).permute(0, 2, 3, 1).numpy()  # (N, H, W, 3)
    saved = np.random.get_state()
    np.random.seed(set_seed)
    try:
        extra = lambda i: {"seed": set_seed + i} if corruption in SEEDED else {}  # noqa: E731
        out = np.stack([
            package.corrupt(np.ascontiguousarray(image), severity=severity, corruption_name=corruption, **extra(i))
            for i, image in enumerate(pixels)
        ])  # fmt: skip
    finally:
        np.random.set_state(saved)
    out = torch.from_numpy(out).permute(0, 3, 1, 2).float() / 255  # (N, 3, H, W)
    if images.shape[1] == 1:
        out = torch.einsum("nchw,c->nhw", out, torch.tensor(LUMA))[:, None]  # (N, 1, H, W)
    return out.to(images.device, images.dtype)


@torch.no_grad()
def error_rate(classify, images, labels, batch_size=256):
    """The top-1 error (a fraction) of classify(images in [0, 1]) -> logits (N, classes)."""
    wrong = 0
    for start in range(0, len(images), batch_size):
        logits = classify(images[start : start + batch_size])
        wrong += (logits.argmax(1).cpu() != labels[start : start + batch_size].cpu()).sum().item()
    return wrong / len(images)


def corruption_errors(classifiers, images, labels, corruptions=CORRUPTIONS, severities=SEVERITIES, seed=0,
                      progress=None):  # fmt: skip
    """{name: {(corruption, severity): top-1 error}} for each of `classifiers` = {name: classify}, where
    classify(images in [0, 1]) gives the logits. Every classifier sees the same corrupted images; the table is
    what `mae.benchmarks.corruption_summary` reads. `progress`: a tqdm-like wrapper for the sets."""
    sets = [(corruption, severity) for corruption in corruptions for severity in severities]
    errors = {name: {} for name in classifiers}
    for corruption, severity in progress(sets) if progress else sets:
        corrupted = corrupt(images, corruption, severity, seed)
        for name, classify in classifiers.items():
            errors[name][corruption, severity] = error_rate(classify, corrupted, labels)
    return errors


# --------------------------------------------------------------------------- pictures (notebook 13)


def show_image(ax, image, title=None):
    """(1, C, H, W) in [0, 1] on `ax`, in grey for one channel."""
    image = image[0].permute(1, 2, 0).squeeze(-1).numpy()
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)


# The corruptions' names as a figure shows them (the keys are ImageNet-C's folder names).
CORRUPTION_TITLES = {
    "gaussian_noise": N_("Gaussian noise"), "shot_noise": N_("shot noise"), "impulse_noise": N_("impulse noise"),
    "defocus_blur": N_("defocus blur"), "glass_blur": N_("glass blur"), "motion_blur": N_("motion blur"),
    "zoom_blur": N_("zoom blur"), "snow": N_("snow"), "frost": N_("frost"), "fog": N_("fog"),
    "brightness": N_("brightness"), "contrast": N_("contrast"), "elastic_transform": N_("elastic"),
    "pixelate": N_("pixelate"), "jpeg_compression": N_("JPEG"),
}  # fmt: skip


def corruption_title(name):
    return _(CORRUPTION_TITLES[name]) if name in CORRUPTION_TITLES else name


def show_corruptions(imgs, corruptions=CORRUPTIONS, severities=(1, 3, 5), seed=0):
    """One image under each corruption (a column) at each of `severities` (a row), the clean image first.

    `imgs`: normalised (B, C, H, W), the first is shown; it is corrupted as `mae.corruptions.corrupt` corrupts
    every image of the evaluation (the same seed gives the same noise)."""
    image = denormalize(imgs[:1])  # (1, C, H, W) in [0, 1]
    fig, axes = plt.subplots(len(severities), len(corruptions) + 1, squeeze=False,
                             figsize=(0.8 * (len(corruptions) + 1), 0.95 * len(severities) + 0.5))  # fmt: skip
    for row, severity in zip(axes, severities):
        show_image(row[0], image, _("clean") if severity == severities[0] else None)
        row[0].text(-0.15, 0.5, _("severity {severity}").format(severity=severity), rotation=90, fontsize=8,
                    transform=row[0].transAxes, ha="right", va="center")  # fmt: skip
        for ax, name in zip(row[1:], corruptions):
            corrupted = corrupt(image, name, severity, seed)
            show_image(ax, corrupted)
            if severity == severities[0]:
                ax.set_title(corruption_title(name), fontsize=7, rotation=30, ha="left", loc="left")
    fig.subplots_adjust(left=0.03, right=0.99, bottom=0.01, top=0.85, wspace=0.05, hspace=0.05)
    return fig


def show_errors(errors, clean, corruptions=CORRUPTIONS, columns=5, chance=None):
    """Top-1 error against severity, one panel per corruption and one line per model.

    `errors` = {model: {(corruption, severity): error}} (`mae.corruptions.corruption_errors`), `clean` =
    {model: error on the clean images}, drawn at severity 0; `chance`: the error of a guess, a dotted line. Model
    names are keys, shown in the learner's language where the catalogue has them."""
    rows = -(-len(corruptions) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.0 * columns, 1.6 * rows + 0.5), sharex=True, sharey=True,
                             squeeze=False)  # fmt: skip
    severities = sorted({severity for table in errors.values() for _c, severity in table})
    for ax, name in zip(axes.flat, corruptions):
        for j, (model, table) in enumerate(errors.items()):
            values = [clean[model], *[table[name, severity] for severity in severities]]
            ax.plot([0, *severities], values, marker="o", markersize=3, color=f"C{j}", label=_(model))
        if chance is not None:
            ax.axhline(chance, color="grey", linestyle=":", zorder=0,
                       label=_("chance ({chance:.0%})").format(chance=chance))  # fmt: skip
        ax.set_title(corruption_title(name), fontsize=9, pad=3)
        ax.set_ylim(0, 1)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(corruptions) :]:
        ax.set_axis_off()
    for ax in axes[-1]:
        ax.set_xticks([0, *severities], [_("clean"), *map(str, severities)], fontsize=7)
        ax.set_xlabel(_("severity"), fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel(_("top-1 error"), fontsize=8)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()), h_pad=0.6)
    return fig
