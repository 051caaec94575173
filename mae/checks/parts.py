"""What the model-level checks (06-08, 12) share: tiny configurations, square then rectangular images, and the
learner's parts from earlier steps (PatchEmbed, the position table, masking, Attention, Block) checked with those
steps' checks first, so that a wrong earlier step is blamed, not the step being checked."""

import torch
from torch import nn

from .. import models as ref
from ..i18n import N_, _
from .attention import check_attention
from .block import check_block
from .harness import _call, _copy_weights, _earlier_step_must_pass, _inputs, _ok, _optional, _randomise
from .masking import check_random_masking
from .patch_embed import check_patch_embed
from .pos_embed import check_pos_embed

TINY = dict(
    img_size=16,
    patch_size=4,
    in_chans=3,
    embed_dim=16,
    depth=2,
    num_heads=2,
    decoder_embed_dim=12,
    decoder_depth=1,
    decoder_num_heads=3,
    mlp_ratio=2.0,
)  # fmt: skip  a square 4 x 4 grid of 3-channel patches: what the official code takes
TINY_RECT = {**TINY, "img_size": (16, 24), "in_chans": 2}  # optional: a 4 x 6 grid, 2 channels
RECT = N_("(16, 24) images with 2 channels")


# torch.cat of a (1, 1, D) CLS token with (B, L, D) tokens: the known error of a CLS token not expanded.
CLS_NOT_EXPANDED = (
    r"Sizes of tensors must match except in dimension 1\. Expected size [12] but got size [12]\b"
)


def _models(MAE, config, seed, **overrides):
    config = {**config, **overrides}
    reference = _randomise(ref.MAE(**config), seed).eval()  # its sin-cos tables stay as built
    yours = _call("MAE(...)", MAE, **config)
    _fixed_tables(yours, reference)  # before the reference's weights are copied over what yours built
    _copy_weights("MAE", reference, yours)
    return reference, yours.eval()


def _fixed_tables(yours, reference):
    """The position tables the learner's constructor built: filled, and fixed (MAE does not train them)."""
    for name in ("pos_embed", "decoder_pos_embed"):
        want, theirs = getattr(reference, name), getattr(yours, name, None)
        if not isinstance(theirs, torch.Tensor) or theirs.shape != want.shape:
            continue  # missing or misshapen: the weights' names and shapes are reported next
        if not theirs.detach().abs().any():
            raise AssertionError(
                _(
                    "{name} is all zeros: fill it in __init__ with the 2-D sin-cos table, get_2d_sincos_pos_embed(width, "
                    "grid_size, cls_token=True), copied into it (.data.copy_(...)); it is never trained"
                ).format(name=name)
            )
        if theirs.requires_grad:
            raise AssertionError(
                _(
                    "{name} is trainable: MAE's position tables are the fixed sin-cos ones; make it "
                    "nn.Parameter(..., requires_grad=False) (as the official code) so that the optimizer leaves it alone"
                ).format(name=name)
            )


def _images(config, seed=0):
    size = config["img_size"]
    h, w = (size, size) if isinstance(size, int) else size
    return _inputs(2, config["in_chans"], h, w, seed=seed)


def _square_then_rectangular(check_on, cls, seed, summary, earlier_checks=None):
    """check_on(cls, config, seed) on square images, the learner's earlier parts first (with `earlier_checks`,
    default EARLIER_CHECKS); then, optionally, on rectangular ones; the ✓ line."""
    check_on(cls, TINY, seed=seed, parts=earlier_checks or EARLIER_CHECKS)
    _ok(summary + _optional(_(RECT), lambda: check_on(cls, TINY_RECT, seed=seed + 1)))


def _globals_used(cls, name):
    """The distinct objects named `name` in the globals of the methods of `cls` and its bases: the
    functions (random_masking, get_2d_sincos_pos_embed) that the learner's model calls."""
    found = []
    for klass in cls.__mro__:
        for attribute in vars(klass).values():
            namespace = getattr(getattr(attribute, "__func__", attribute), "__globals__", {})
            value = namespace.get(name)
            if callable(value) and not any(value is f for f in found):
                found.append(value)
    return found


def _earlier_steps(yours, checks, blocks=("blocks",), patch_embed=True, masking=True):
    """Check the parts of the learner's model that come from earlier steps, with those steps' checks (`checks`:
    EARLIER_CHECKS, or a test's own, keyed by the part).

    A wrong Attention makes the encoder's output wrong too; this says which step to fix, instead
    of blaming the step being checked. The reference's own parts are not checked again.
    """
    parts = []  # (step, what it is, its check, the learner's object)
    if patch_embed and isinstance(getattr(yours, "patch_embed", None), nn.Module):
        parts.append(("01", "PatchEmbed", checks["PatchEmbed"], type(yours.patch_embed)))
    for function in _globals_used(type(yours), "get_2d_sincos_pos_embed"):
        parts.append(("02", "get_2d_sincos_pos_embed", checks["get_2d_sincos_pos_embed"], function))
    for function in _globals_used(type(yours), "random_masking") if masking else ():
        parts.append(("03", "random_masking", checks["random_masking"], function))
    for block in (block for name in blocks for block in getattr(yours, name, ())):
        if isinstance(getattr(block, "attn", None), nn.Module):
            parts.append(("04", "Attention", checks["Attention"], type(block.attn)))
        parts.append(("05", "Block", checks["Block"], type(block)))
    checked = [ref.PatchEmbed, ref.get_2d_sincos_pos_embed, ref.random_masking, ref.Attention, ref.Block]
    for step, role, check, part in sorted(parts, key=lambda part: part[0]):
        if any(part is done for done in checked):
            continue
        checked.append(part)
        what = _("your model's {role} (step {step})").format(role=role, step=step)
        _earlier_step_must_pass(check, part, what, _("this check"), step)


# The checks of the parts a model takes from earlier steps (what _earlier_steps runs); a test may pass its own.
EARLIER_CHECKS = {
    "PatchEmbed": check_patch_embed,
    "get_2d_sincos_pos_embed": check_pos_embed,
    "random_masking": check_random_masking,
    "Attention": check_attention,
    "Block": check_block,
}
