"""Check 01: the patch embedding (a Conv2d, or a Linear on unfolded patches), its token order and shapes."""

import torch
import torch.nn.functional as F

from .. import models as ref
from ..i18n import N_, _
from .harness import _call, _compare, _copy_weights, _inputs, _ok, _optional, _randomise, learner_facing

# Square images, as the official code takes them: a 4 x 4 grid (its transpose is a different order).
PATCH_EMBED = dict(img_size=16, patch_size=4, in_chans=3, embed_dim=8)


PATCH_EMBED_RECT = dict(img_size=(16, 24), patch_size=8, in_chans=2, embed_dim=6)  # optional: a 2 x 3 grid


def _linear_order(reference, imgs, order):
    """PatchEmbed's output for a Linear proj that flattens each patch in `order` (a permutation of "cpq").

    proj.weight is the Conv2d weight (D, C, p, p) flattened as (c, p, q), which is what F.unfold gives;
    flattening the patch in another order pairs each weight with the wrong pixel.
    """
    weight = reference.proj.weight
    D, C, p = weight.shape[:3]
    sizes = {"c": C, "p": p, "q": p}
    laid_out = weight.reshape(D, *(sizes[a] for a in order))  # indexed by the learner's order
    kernel = laid_out.permute(0, *(1 + order.index(a) for a in "cpq"))  # back to (D, c, p, q)
    return F.conv2d(imgs, kernel, reference.proj.bias, stride=p).flatten(2).transpose(1, 2)


def _check_patch_embed_on(PatchEmbed, kwargs, seed):
    reference = _randomise(ref.PatchEmbed(**kwargs), seed)
    args = ", ".join(f"{k}={v}" for k, v in kwargs.items())
    yours = _call(f"PatchEmbed({args})", PatchEmbed, **kwargs)
    _copy_weights("PatchEmbed", reference, yours)
    C, (h, w), p = kwargs["in_chans"], reference.grid_size, kwargs["patch_size"]
    imgs = _inputs(2, C, h * p, w * p)
    with torch.no_grad():
        want = reference(imgs)  # (B, L, D)
        got = _call("PatchEmbed.forward", yours, imgs)
        D = want.shape[-1]
        grid = want.reshape(2, h, w, D)
        overlapping = torch.empty(2, (h * p - p + 1) * (w * p - p + 1), D)
        mistakes = [
            (want.transpose(1, 2), _("the embedding dimension must come last: (B, L, D); did you forget .transpose(1, 2)?")),
            (grid.transpose(1, 2).reshape(2, h * w, D),
             _("the patches are in column order; patch index must run row by row: index = row * w + col "
               "(flatten (B, D, h, w) with .flatten(2), not after swapping h and w)")),
            (reference.proj(imgs).reshape(2, -1, D),
             _("reshaping (B, D, h, w) straight to (B, L, D) mixes channels and positions: "
               "flatten(2) to (B, D, L), then transpose(1, 2)")),
            (reference.proj(imgs), _("the output must be a sequence (B, L, D); flatten the (h, w) grid of patches")),
            (overlapping, _("the patches overlap: the Conv2d needs kernel_size = stride = patch_size")),
        ] + [
            (_linear_order(reference, imgs, order),
             _("the pixels inside each patch are flattened in the wrong order ({order}) for proj.weight: "
               "a Linear proj holds the Conv2d weight (D, C, p, p) flattened, so flatten each patch as (c, p, q), "
               "channel first, as F.unfold does").format(order=", ".join(order)))
            for order in ("pqc", "qpc", "cqp")
        ]  # fmt: skip
    _compare(_("PatchEmbed output"), got, want, ("image", "patch", "channel"), mistakes)
    _attributes_the_model_reads(yours, reference)


# What the later steps read of a PatchEmbed (the encoder, the decoder, patchify, the figures): (name, why).
READ_LATER = (
    ("num_patches", N_("the encoder sizes its position table with it (L)")),
    ("grid_size", N_("the position table and patchify are laid out on it, (h, w)")),
    ("patch_size", N_("patchify and unpatchify cut the image with it")),
    ("img_size", N_("patchify checks the image size with it")),
    ("in_chans", N_("patchify and unpatchify need the number of channels")),
)


def _attributes_the_model_reads(yours, reference):
    """The attributes later steps read, with the reference's values: a correct map without them breaks step 06."""
    for name, why in READ_LATER:
        if not hasattr(yours, name):
            raise AssertionError(
                _("PatchEmbed has no {name}: {why}. Set self.{name} = {value} (here) in __init__").format(
                    name=name, why=_(why), value=repr(getattr(reference, name))
                )
            )
        value, wanted = getattr(yours, name), getattr(reference, name)
        if (tuple(value) if isinstance(value, (list, tuple)) else value) != wanted:
            raise AssertionError(
                _("PatchEmbed.{name} is {value}, expected {wanted}: {why}").format(
                    name=name, value=repr(value), wanted=repr(wanted), why=_(why)
                )
            )


@learner_facing
def check_patch_embed(PatchEmbed: type) -> None:
    _check_patch_embed_on(PatchEmbed, PATCH_EMBED, seed=10)
    note = _optional(
        _("(16, 24) images with 2 channels"),
        lambda: _check_patch_embed_on(PatchEmbed, PATCH_EMBED_RECT, seed=11),
    )
    _ok(
        _(
            "PatchEmbed: (2, 3, 16, 16) images -> (2, 16, 8) tokens, row by row, as the reference{note}"
        ).format(note=note)
    )
