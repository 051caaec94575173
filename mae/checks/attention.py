"""Check 04: multi-head self-attention, on both paths (fused scaled_dot_product_attention and the explicit
softmax), with the classic mistakes (no scale, the wrong scale, the softmax over queries, heads split wrongly)."""

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from .. import models as ref
from .harness import _call, _close, _compare, _copy_weights, _inputs, _ok, _randomise, _tensor, learner_facing

NOT_SCALED = "the attention scores are not scaled: multiply q k^T by head_dim ** -0.5"
SCALED_BY_DIM = "scale by head_dim ** -0.5 (the width of one head), not by dim ** -0.5"
# The symptom, always true; the cause, only for code that calls F.scaled_dot_product_attention (which scales by itself).
SCALED_BY_HEAD_DIM = "the scores are scaled by 1 / head_dim; attention divides them by sqrt(head_dim): multiply q k^T by head_dim ** -0.5 (self.scale), once"
SDPA_SCALES_ITSELF = (
    " F.scaled_dot_product_attention already scales by head_dim ** -0.5, so q k^T is scaled twice: do not multiply q"
    " by self.scale before it"
)
SOFTMAX_OVER_QUERIES = "the softmax must run over the keys (the last dimension), not the queries"
SCORES_TRANSPOSED = (
    "the scores are transposed: q @ k.transpose(-2, -1) (one row per query), not k @ q.transpose(-2, -1)"
)
SPLIT_HEADS_FIRST = (
    "q, k and v are split the wrong way: self.qkv's output is laid out (3, heads, head_dim), so reshape it to "
    "(B, N, 3, heads, head_dim), not (B, N, heads, 3, head_dim)"
)
SPLIT_NO_PERMUTE = (
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
        (*qkv.reshape(B, N, H, 3, hd).permute(3, 0, 2, 1, 4), SPLIT_HEADS_FIRST),
        (*qkv.reshape(3, B, H, N, hd), SPLIT_NO_PERMUTE),
    ]


def _attention_variants(attn, x, calls_sdpa=False):
    """Outputs of the classic attention mistakes, computed from the reference module; `calls_sdpa`: the learner's
    forward calls F.scaled_dot_product_attention (a cause that only such code can have)."""
    B, N, C = x.shape
    hd = attn.head_dim
    qkv = attn.qkv(x)
    (q, k, v, _), *wrong_splits = _qkv_splits(attn, x)
    scores = q @ k.transpose(-2, -1)

    def finish(out):  # (B, H, N, hd) -> (B, N, C)
        return attn.proj(out.transpose(1, 2).reshape(B, N, C))

    def attend(q, k, v):
        return finish(((q @ k.transpose(-2, -1)) * hd**-0.5).softmax(-1) @ v)

    def one_head(scale):  # the heads forgotten: one attention of width C
        q, k, v = qkv.split(C, dim=-1)
        return attn.proj(((q @ k.transpose(-2, -1)) * scale).softmax(-1) @ v)

    return [
        (finish(scores.softmax(-1) @ v), NOT_SCALED),
        (finish((scores * C**-0.5).softmax(-1) @ v), SCALED_BY_DIM),
        (finish((scores / hd).softmax(-1) @ v), SCALED_BY_HEAD_DIM + ("." + SDPA_SCALES_ITSELF if calls_sdpa else "")),
        (finish((scores * hd**-0.5).softmax(-2) @ v), SOFTMAX_OVER_QUERIES),
        (finish((scores.transpose(-2, -1) * hd**-0.5).softmax(-1) @ v), SCORES_TRANSPOSED),
        *[(attend(q, k, v), hint) for q, k, v, hint in wrong_splits],
        (attn.proj(((scores * hd**-0.5).softmax(-1) @ v).reshape(B, N, C)),
         "heads were merged in the wrong order: transpose (B, H, N, hd) to (B, N, H, hd) before reshaping to (B, N, C)"),
        (((scores * hd**-0.5).softmax(-1) @ v).transpose(1, 2).reshape(B, N, C), "apply the output projection self.proj at the end"),
        (one_head(hd**-0.5), "the attention runs as one head of width dim; split q, k, v into num_heads heads of width head_dim"),
        (one_head(C**-0.5), "the attention runs as one head of width dim; split q, k, v into num_heads heads of width head_dim"),
    ]  # fmt: skip


def _attention_weights_variants(attn, x):
    """attention_weights(x) of the classic mistakes, computed from the reference module."""
    C = x.shape[-1]
    hd = attn.head_dim
    (q, k, _, _), *wrong_splits = _qkv_splits(attn, x)
    scores = q @ k.transpose(-2, -1)
    want = (scores * hd**-0.5).softmax(-1)
    return [
        (scores.softmax(-1), NOT_SCALED),
        ((scores * C**-0.5).softmax(-1), SCALED_BY_DIM),
        ((scores / hd).softmax(-1), SCALED_BY_HEAD_DIM),
        ((scores * hd**-0.5).softmax(-2), SOFTMAX_OVER_QUERIES),
        ((scores.transpose(-2, -1) * hd**-0.5).softmax(-1), SCORES_TRANSPOSED),
        (scores * hd**-0.5, "attention_weights returns probabilities: apply the softmax over the keys (dim=-1)"),
        *[(((q @ k.transpose(-2, -1)) * hd**-0.5).softmax(-1), hint) for q, k, _, hint in wrong_splits],
        (want.mean(1), "return one (N, N) map per head, (B, heads, N, N), not their average"),
    ]  # fmt: skip


PATHS = {True: "fused path, fused_attn=True", False: "explicit path, fused_attn=False"}


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
        out = _tensor("Attention output", _call(call, yours, x))
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
                call = f"Attention.forward on the {PATHS[not flag].replace(', ', ' (')})"
                other, other_sdpa = _forward(call, yours, x)
            except AssertionError as error:
                raised = error
            finally:
                yours.fused_attn = flag
        mistakes = {
            path: _attention_variants(reference, x, calls)
            for path, calls in ((flag, sdpa), (not flag, other_sdpa))
        }
    if raised is not None:  # the default path runs, the other does not
        _compare(f"Attention output ({PATHS[flag]})", got, want, axes, mistakes[flag])
        raise AssertionError(
            f"{raised}\nHint: with your default, fused_attn={flag}, it runs and is right; the mistake is only on this path"
        ) from None
    # Your forward has two paths when fused_attn changes what it computes or how (one calls the fused kernel).
    two_paths = other is not None and (not _close(got, other) or sdpa != other_sdpa)
    paths = {"": (got, flag)}
    if two_paths and not _close(got, other):  # they differ: check both, and say which is wrong
        paths = {f" ({PATHS[flag]})": (got, flag), f" ({PATHS[not flag]})": (other, not flag)}
    errors = {}
    for label, (output, path) in paths.items():
        try:
            _compare(f"Attention output{label}", output, want, axes, mistakes[path])
        except AssertionError as error:
            errors[label] = error
    if errors:
        label, error = next(iter(errors.items()))
        if len(paths) > len(errors):  # the other path is right: say so, it narrows the search
            right = "fused" if "explicit" in label else "explicit"
            raise AssertionError(
                f"{error}\nHint: your {right} path is right; the mistake is only in this one"
            ) from None
        raise error
    note = " (fused and explicit paths)" if two_paths else ""
    if callable(getattr(yours, "attention_weights", None)):  # your own class may not have it: fine
        with torch.no_grad():
            got = _call("Attention.attention_weights(x)", yours.attention_weights, x)
            _compare("attention_weights(x)", got, reference.attention_weights(x), ("batch", "head", "query", "key"),
                     _attention_weights_variants(reference, x))  # fmt: skip
        note += "; attention_weights too"
    _ok(f"Attention: 3 heads of width 4, scaled dot products, softmax over keys, as the reference{note}")
