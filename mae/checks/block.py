"""Check 05: the pre-norm transformer block and its MLP."""

import contextlib
import io

import torch
import torch.nn.functional as F

from .. import models as ref
from ..i18n import _
from .attention import check_attention
from .harness import (
    _call,
    _compare,
    _copy_weights,
    _inputs,
    _ok,
    _randomise,
    _same_on_other_path,
    learner_facing,
)


def _mlp_variants(mlp, x):
    fc1, fc2 = mlp.fc1, mlp.fc2
    return [
        (fc2(F.relu(fc1(x))), _("the MLP uses ReLU; MAE's ViT uses GELU: Linear -> nn.GELU() -> Linear")),
        (
            fc2(F.gelu(fc1(x), approximate="tanh")),
            _(
                'the MLP uses the tanh approximation of GELU; use the exact one, nn.GELU() (approximate="none"), as timm\'s ViT'
            ),
        ),
        (fc2(fc1(x)), _("the MLP has no activation: Linear -> GELU -> Linear")),
        (F.gelu(fc2(F.gelu(fc1(x)))), _("the activation goes only between fc1 and fc2, not after fc2")),
    ]


@learner_facing
def check_block(Block: type) -> None:
    reference = _randomise(ref.Block(12, num_heads=3, mlp_ratio=2.0), seed=30).eval()
    yours = _call("Block(12, num_heads=3, mlp_ratio=2.0)", Block, 12, num_heads=3, mlp_ratio=2.0)
    _copy_weights("Block", reference, yours)
    yours.eval()
    eps = {m.eps for m in yours.modules() if isinstance(m, torch.nn.LayerNorm)}
    if eps != {1e-6}:
        raise AssertionError(
            _("the LayerNorms should use eps=layer_norm_eps (1e-6, as MAE), got eps {eps}").format(
                eps=sorted(eps)
            )
        )
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            check_attention(type(yours.attn))
    except AssertionError as error:
        raise AssertionError(
            _("your Block's Attention is not right yet; pass check_attention first.") + f"\n{error}"
        ) from None
    x = _inputs(2, 5, 12) * 3 + 1  # not already normalised, so a missing norm shows
    r = reference
    with torch.no_grad():
        if callable(getattr(yours, "mlp", None)):  # the MLP on its own first, so that its mistakes are named
            tokens = _inputs(2, 5, 12, seed=5) * 2
            got = _call("Block.mlp", yours.mlp, tokens)
            mistakes = _mlp_variants(r.mlp, tokens)
            _compare(_("Block.mlp output"), got, r.mlp(tokens), ("batch", "token", "channel"), mistakes)
        want = reference(x)
        got = _call("Block.forward", yours, x)
        h = x + r.attn(r.norm1(x))
        post = r.norm1(x + r.attn(x))
        normed = r.norm1(x) + r.attn(r.norm1(x))
        mistakes = [
            (r.norm2(post + r.mlp(post)), _("this is post-norm; MAE's ViT is pre-norm: x + attn(norm1(x)), then x + mlp(norm2(x))")),
            (r.mlp(r.norm2(r.attn(r.norm1(x)))), _("the residual connections are missing: add each sub-layer's output to x")),
            (r.attn(r.norm1(x)) + r.mlp(r.norm2(r.attn(r.norm1(x)))),
             _("the residual connection around the attention is missing: x = x + attn(norm1(x))")),
            (r.mlp(r.norm2(h)), _("the residual connection around the MLP is missing: x = x + mlp(norm2(x))")),
            (h + r.mlp(r.norm1(h)), _("the MLP's input is normalised with norm1; use norm2: x + mlp(norm2(x)) (each sub-layer has its own LayerNorm)")),
            (x + r.attn(r.norm2(x)) + r.mlp(r.norm1(x + r.attn(r.norm2(x)))),
             _("norm1 and norm2 are swapped: norm1 goes before the attention, norm2 before the MLP")),
            (x + r.attn(r.norm1(x)) + r.mlp(r.norm2(x)),
             _("the MLP must see the output of the attention step (x after the first residual), not the block's input")),
            (r.norm2(normed) + r.mlp(r.norm2(normed)),
             _("the residuals must add the un-normalised x: x = x + attn(norm1(x)), not norm1(x) + attn(norm1(x))")),
        ]  # fmt: skip
        _compare(_("Block output"), got, want, ("batch", "token", "channel"), mistakes)
        _same_on_other_path(
            _("Block output"),
            yours,
            lambda: _call("Block.forward", yours, x),
            want,
            ("batch", "token", "channel"),
        )
    _ok(_("Block: pre-norm attention and MLP, each with a residual connection"))
