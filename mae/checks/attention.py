"""Check 04: multi-head self-attention, on both paths (fused scaled_dot_product_attention and the explicit
softmax), with the classic mistakes (no scale, the wrong scale, the softmax over queries, heads split wrongly)."""

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from .. import models as ref
from ..i18n import N_, _
from .harness import (
    _call,
    _close,
    _compare,
    _copy_weights,
    _hint,
    _inputs,
    _ok,
    _randomise,
    _tensor,
    learner_facing,
)

NOT_SCALED = N_("the attention scores are not scaled: multiply q k^T by head_dim ** -0.5")
SCALED_BY_DIM = N_("scale by head_dim ** -0.5 (the width of one head), not by dim ** -0.5")
# The symptom, always true; the cause, only for code that calls F.scaled_dot_product_attention (which scales by itself).
SCALED_BY_HEAD_DIM = N_(
    "the scores are scaled by 1 / head_dim; attention divides them by sqrt(head_dim): multiply q k^T by head_dim ** -0.5 (self.scale), once"
)
SDPA_SCALES_ITSELF = N_(
    "F.scaled_dot_product_attention already scales by head_dim ** -0.5, so q k^T is scaled twice: do not multiply q"
    " by self.scale before it"
)
SOFTMAX_OVER_QUERIES = N_("the softmax must run over the keys (the last dimension), not the queries")
SCORES_TRANSPOSED = N_(
    "the scores are transposed: q @ k.transpose(-2, -1) (one row per query), not k @ q.transpose(-2, -1)"
)
SPLIT_HEADS_FIRST = N_(
    "q, k and v are split the wrong way: self.qkv's output is laid out (3, heads, head_dim), so reshape it to "
    "(B, N, 3, heads, head_dim), not (B, N, heads, 3, head_dim)"
)
SPLIT_NO_PERMUTE = N_(
    "q, k and v are split the wrong way: reshape to (B, N, 3, heads, head_dim), then permute(2, 0, 3, 1, 4); "
    "a reshape straight to (3, B, heads, N, head_dim) mixes tokens and channels"
)


def _qkv_splits(attn, x):
    """(q, k, v, hint) for the right split of self.qkv's output (hint None) and the classic wrong ones."""
    B, N, C = x.shape
    H, hd = attn.num_heads, attn.head_dim
    qkv = attn.qkv(x)
    return [
        (*qkv.reshape(B, N, 3, H, hd).permute(2, 0, 3, 1, 4), None),
        (*qkv.reshape(B, N, H, 3, hd).permute(3, 0, 2, 1, 4), _(SPLIT_HEADS_FIRST)),
        (*qkv.reshape(3, B, H, N, hd), _(SPLIT_NO_PERMUTE)),
    ]


def _attention_variants(attn, x, calls_sdpa=False):
    """Outputs of the classic attention mistakes, computed from the reference module; `calls_sdpa`: the learner's
    forward calls F.scaled_dot_product_attention (a cause that only such code can have)."""
    B, N, C = x.shape
    hd = attn.head_dim
    qkv = attn.qkv(x)
    (q, k, v, _right), *wrong_splits = _qkv_splits(attn, x)
    scores = q @ k.transpose(-2, -1)

    def finish(out):  # (B, H, N, hd) -> (B, N, C)
        return attn.proj(out.transpose(1, 2).reshape(B, N, C))

    def attend(q, k, v):
        return finish(((q @ k.transpose(-2, -1)) * hd**-0.5).softmax(-1) @ v)

    def one_head(scale):  # the heads forgotten: one attention of width C
        q, k, v = qkv.split(C, dim=-1)
        return attn.proj(((q @ k.transpose(-2, -1)) * scale).softmax(-1) @ v)

    return [
        (finish(scores.softmax(-1) @ v), _(NOT_SCALED)),
        (finish((scores * C**-0.5).softmax(-1) @ v), _(SCALED_BY_DIM)),
        (finish((scores / hd).softmax(-1) @ v), _(SCALED_BY_HEAD_DIM) + (". " + _(SDPA_SCALES_ITSELF) if calls_sdpa else "")),
        (finish((scores * hd**-0.5).softmax(-2) @ v), _(SOFTMAX_OVER_QUERIES)),
        (finish((scores.transpose(-2, -1) * hd**-0.5).softmax(-1) @ v), _(SCORES_TRANSPOSED)),
        *[(attend(q, k, v), hint) for q, k, v, hint in wrong_splits],
        (attn.proj(((scores * hd**-0.5).softmax(-1) @ v).reshape(B, N, C)),
         _("heads were merged in the wrong order: transpose (B, H, N, hd) to (B, N, H, hd) before reshaping to (B, N, C)")),
        (((scores * hd**-0.5).softmax(-1) @ v).transpose(1, 2).reshape(B, N, C), _("apply the output projection self.proj at the end")),
        (one_head(hd**-0.5), _("the attention runs as one head of width dim; split q, k, v into num_heads heads of width head_dim")),
        (one_head(C**-0.5), _("the attention runs as one head of width dim; split q, k, v into num_heads heads of width head_dim")),
    ]  # fmt: skip


def _attention_weights_variants(attn, x):
    """attention_weights(x) of the classic mistakes, computed from the reference module."""
    C = x.shape[-1]
    hd = attn.head_dim
    (q, k, _v, _right), *wrong_splits = _qkv_splits(attn, x)
    scores = q @ k.transpose(-2, -1)
    want = (scores * hd**-0.5).softmax(-1)
    return [
        (scores.softmax(-1), _(NOT_SCALED)),
        ((scores * C**-0.5).softmax(-1), _(SCALED_BY_DIM)),
        ((scores / hd).softmax(-1), _(SCALED_BY_HEAD_DIM)),
        ((scores * hd**-0.5).softmax(-2), _(SOFTMAX_OVER_QUERIES)),
        ((scores.transpose(-2, -1) * hd**-0.5).softmax(-1), _(SCORES_TRANSPOSED)),
        (scores * hd**-0.5, _("attention_weights returns probabilities: apply the softmax over the keys (dim=-1)")),
        *[(((q @ k.transpose(-2, -1)) * hd**-0.5).softmax(-1), hint) for q, k, _v, hint in wrong_splits],
        (want.mean(1), _("return one (N, N) map per head, (B, heads, N, N), not their average")),
    ]  # fmt: skip


PATHS = {True: N_("fused path, fused_attn=True"), False: N_("explicit path, fused_attn=False")}
ON_PATH = {  # the learner's forward run on that path, as the `what` of its errors
    True: N_("Attention.forward on the fused path (fused_attn=True)"),
    False: N_("Attention.forward on the explicit path (fused_attn=False)"),
}


class _SdpaCalls(TorchFunctionMode):
    """Counts the calls of F.scaled_dot_product_attention inside it."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.count += func is F.scaled_dot_product_attention
        return func(*args, **(kwargs or {}))


def _forward(call, yours, x):
    """(the learner's output, whether it called F.scaled_dot_product_attention)."""
    with _SdpaCalls() as calls:
        out = _tensor(_("Attention output"), _call(call, yours, x))
    return out, calls.count > 0


@learner_facing
def check_attention(Attention: type) -> None:
    reference = _randomise(ref.Attention(12, num_heads=3), seed=20).eval()
    yours = _call("Attention(12, num_heads=3)", Attention, 12, num_heads=3)
    _copy_weights("Attention", reference, yours)
    yours.eval()
    x = _inputs(2, 5, 12)
    axes = ("batch", "token", "channel")
    with torch.no_grad():
        want = reference(x)
        got, sdpa = _forward("Attention.forward", yours, x)
        other_sdpa = sdpa
        # A class with a fused_attn flag (timm's, the reference's) has two paths, the fused
        # F.scaled_dot_product_attention and the explicit softmax: both must be right.
        flag = getattr(yours, "fused_attn", None)
        other, raised = None, None
        if isinstance(flag, bool):
            yours.fused_attn = not flag
            try:
                other, other_sdpa = _forward(_(ON_PATH[not flag]), yours, x)
            except AssertionError as error:
                raised = error
            finally:
                yours.fused_attn = flag
        mistakes = {
            path: _attention_variants(reference, x, calls)
            for path, calls in ((flag, sdpa), (not flag, other_sdpa))
        }
    if raised is not None:  # the default path runs, the other does not
        _compare(_("Attention output ({path})").format(path=_(PATHS[flag])), got, want, axes, mistakes[flag])
        hint = _(
            "with your default, fused_attn={flag}, it runs and is right; the mistake is only on this path"
        ).format(flag=flag)
        raise AssertionError(f"{raised}{_hint([hint])}") from None
    # Your forward has two paths when fused_attn changes what it computes or how (one calls the fused kernel).
    two_paths = other is not None and (not _close(got, other) or sdpa != other_sdpa)
    paths = {_("Attention output"): (got, flag)}
    if two_paths and not _close(got, other):  # they differ: check both, and say which is wrong
        paths = {
            _("Attention output ({path})").format(path=_(PATHS[path])): (output, path)
            for output, path in ((got, flag), (other, not flag))
        }
    errors = {}  # fused_attn of the path -> what is wrong on it
    for what, (output, path) in paths.items():
        try:
            _compare(what, output, want, axes, mistakes[path])
        except AssertionError as error:
            errors[path] = error
    if errors:
        path, error = next(iter(errors.items()))
        if len(paths) > len(errors):  # the other path is right: say so, it narrows the search
            if path:
                hint = _("your explicit path is right; the mistake is only in this one")
            else:
                hint = _("your fused path is right; the mistake is only in this one")
            raise AssertionError(f"{error}{_hint([hint])}") from None
        raise error
    note = " " + _("(fused and explicit paths)") if two_paths else ""
    if callable(getattr(yours, "attention_weights", None)):  # your own class may not have it: fine
        with torch.no_grad():
            got = _call("Attention.attention_weights(x)", yours.attention_weights, x)
            _compare("attention_weights(x)", got, reference.attention_weights(x), ("batch", "head", "query", "key"),
                     _attention_weights_variants(reference, x))  # fmt: skip
        note += _("; {label} too").format(label="attention_weights")
    _ok(
        _(
            "Attention: 3 heads of width 4, scaled dot products, softmax over keys, as the reference{note}"
        ).format(note=note)
    )
