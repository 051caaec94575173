"""One check per exercise: it takes your object, compares it with the reference, and explains mistakes.

    from mae.checks import check_patch_embed
    check_patch_embed(PatchEmbed)        # prints one line, or raises AssertionError saying what is wrong

Every check copies the reference weights into your module, runs both on fixed, non-trivial
inputs (explicit noise wherever masking is involved) and compares. The reference weights are
drawn from seeded generators, biases and LayerNorm scales included (at initialisation those are
0 and 1, which would hide mistakes), so every message is the same from run to run. When the
values differ, the check tries the classic mistakes (computed from the reference) and names the
one you made; otherwise it says where the first wrong value is. Any correct implementation passes.

The checks use square images, as the official code does. Rectangular images and other channel
counts are checked too, but only if your code accepts them; if it does not, the ✓ line says that
this optional part was skipped.

From a terminal, `python -m mae.checks [step ...]` checks your exercises/ like rustlings. It, and
the notebooks (through `mae.course.use`), let the reference stand in for the steps you have not
written yet; a check called on `import exercises` directly runs exactly what is in your files.
"""

import argparse
import contextlib
import importlib
import inspect
import io
import re
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import solutions as ref

from . import impl as implementation

ATOL = 1e-5


# --------------------------------------------------------------------------- helpers


class _Raised(AssertionError):
    """The learner's code raised an exception (an unfinished stub is not one of these)."""

    def __init__(self, message, kind):
        super().__init__(message)
        self.kind = kind


def _call(what, fn, *args, known=(), **kwargs):
    """Run the learner's code; turn an unfinished stub or a crash into an explanation.

    known: (regex, hint) pairs; an error whose text matches a regex is a known mistake of this
    call, and its hint is added to the message.
    """
    try:
        return fn(*args, **kwargs)
    except NotImplementedError as error:
        frame = traceback.extract_tb(error.__traceback__)[-1]
        where = f"{Path(frame.filename).parent.name}/{Path(frame.filename).name}, in {frame.name}"
        raise AssertionError(f"{what} reached code that is not written yet ({where}): {error}") from None
    except Exception as error:  # the learner's own asserts included
        kind = type(error).__name__
        hints = [hint for pattern, hint in known if re.search(pattern, str(error))]
        message = f"{what} raised {kind}: {error}" + (f"\nHint: {hints[0]}" if hints else "")
        raise _Raised(message, kind) from error


def _tensor(what, value):
    if isinstance(value, torch.Tensor):
        return value.detach()
    try:
        return torch.as_tensor(value)
    except Exception:
        raise AssertionError(f"{what} should be a tensor, got {type(value).__name__}") from None


def _close(got, want, atol=ATOL):
    return got.shape == want.shape and torch.allclose(got.double(), want.double(), atol=atol, rtol=1e-4)


def _where(index, axes):
    return ", ".join(f"{name} {int(i)}" for name, i in zip(axes, index))


def _compare(what, got, want, axes, mistakes=(), atol=ATOL, otherwise=None):
    """Assert got == want; otherwise name a matching mistake, or locate the first wrong value.

    axes names each dimension ("batch", "patch", "channel", ...); mistakes is a list of
    (what the mistaken output would be, the hint that explains it). otherwise(got), consulted when
    no mistake matches, may return a hint for a kind of wrong output (not one exact value).
    """
    got = _tensor(what, got)
    if tuple(got.shape) != tuple(want.shape):
        hints = [hint for wrong, hint in mistakes if tuple(wrong.shape) == tuple(got.shape)]
        message = f"{what}: expected shape {tuple(want.shape)} ({', '.join(axes)}), got {tuple(got.shape)}"
        raise AssertionError(message + (f"\nHint: {hints[0]}" if hints else ""))
    if _close(got, want, atol):
        return
    for wrong, hint in mistakes:
        if _close(got, wrong, atol):
            raise AssertionError(f"{what} has the wrong values. {hint}")
    hint = otherwise(got) if otherwise is not None else None
    if hint:
        raise AssertionError(f"{what} has the wrong values. {hint}")
    if want.ndim == 0:
        raise AssertionError(f"{what}: expected {want.item():.6f}, got {got.item():.6f}")
    bad = ~torch.isclose(got.double(), want.double(), atol=atol, rtol=1e-4)
    first = bad.nonzero()[0].tolist()
    raise AssertionError(
        f"{what}: {int(bad.sum())} of {bad.numel()} values are wrong; the first at "
        f"{_where(first, axes)}: expected {want[tuple(first)].item():.5f}, got {got[tuple(first)].item():.5f}"
    )


def _copy_weights(what, reference, yours):
    """Load the reference weights into the learner's module; names must match the official ones."""
    ours, theirs = reference.state_dict(), yours.state_dict()
    missing = [k for k in ours if k not in theirs]
    extra = [k for k in theirs if k not in ours]
    if missing or extra:
        raise AssertionError(
            f"{what}: parameter names differ from the official ones (the checkpoints need them): "
            f"missing {missing[:6]}, unexpected {extra[:6]}"
        )
    with torch.no_grad():
        for key, value in ours.items():
            target = theirs[key]
            if target.numel() != value.numel():
                raise AssertionError(
                    f"{what}: {key} should have shape {tuple(value.shape)}, got {tuple(target.shape)}"
                )
            target.copy_(value.reshape(target.shape))  # a Linear on unfolded patches is fine too


def _randomise(module, seed):
    """Give the reference random weights, random biases and random LayerNorm scales and shifts.

    MAE initialises biases to 0 and LayerNorms to the identity, where norm1 used in place of norm2
    (or a bias added twice) changes nothing. A seeded generator, not the global one, keeps every
    expected value, and so every message, the same from run to run. The fixed sin-cos position
    tables are kept: they are not learned in MAE.
    """
    generator = torch.Generator().manual_seed(seed)

    def draw(tensor, scale, shift=0.0):
        tensor.copy_(shift + scale * torch.randn(tensor.shape, generator=generator))

    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                draw(m.weight, m.weight[0].numel() ** -0.5)  # unit-sized outputs for unit-sized inputs
                if m.bias is not None:
                    draw(m.bias, 0.5)
            elif isinstance(m, nn.LayerNorm):
                draw(m.weight, 0.5, shift=1.0)
                draw(m.bias, 0.5)
            for name in ("cls_token", "mask_token"):
                if isinstance(getattr(m, name, None), nn.Parameter):
                    draw(getattr(m, name), 1.0)
    return module


def _ok(message):
    print(f"\u2713 {message}")


def _inputs(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _noise(n, length, seed=1):
    return torch.rand(n, length, generator=torch.Generator().manual_seed(seed))


def _square_then_rectangular(check_on, cls, seed, summary):
    """check_on(cls, config, seed) on square images, every part; then, optionally, on rectangular ones; the ✓ line."""
    check_on(cls, TINY, seed=seed, parts=True)
    _ok(summary + _optional(RECT, lambda: check_on(cls, TINY_RECT, seed=seed + 1)))


def _optional(label, run):
    """Check an extension the official code lacks (rectangular images, other channel counts).

    Code that does not accept it is not wrong: the part is skipped, and the returned note, added
    to the ✓ line, says so. Code that accepts it but gets it wrong still passes the step (the
    official code is square-only), with a second line saying what is wrong.
    """
    try:
        run()
    except _Raised as error:
        return f"; optional check with {label} skipped (your code raised {error.kind}; fine, the official code is square-only)"
    except AssertionError as error:
        return f"\n  ! optional, not needed by MAE: your code accepts {label} but gets it wrong: {error}"
    return f"; {label} too"


@contextlib.contextmanager
def _other_attention_path(module):
    """Flip every `fused_attn` flag in `module`; yields a label, or None when there is none to flip.

    An Attention with this flag (timm's and the reference's) has two code paths, the fused
    F.scaled_dot_product_attention and the explicit softmax, and both must be right.
    """
    flagged = [m for m in module.modules() if isinstance(getattr(m, "fused_attn", None), bool)]
    saved = [m.fused_attn for m in flagged]
    for m in flagged:
        m.fused_attn = not m.fused_attn
    try:
        yield f"with fused_attn={not saved[0]} in every Attention" if flagged else None
    finally:
        for m, value in zip(flagged, saved):
            m.fused_attn = value


def _same_on_other_path(what, yours, run, want, axes):
    """Run `run()` again on the other attention path of `yours`; it must give `want` too."""
    with _other_attention_path(yours) as path:
        if path is None:
            return
        try:
            _compare(f"{what} {path}", run(), want, axes)
        except AssertionError as error:
            which = "explicit path (fused_attn=False)" if "=False" in path else "fused path (fused_attn=True)"
            raise AssertionError(
                f"{error}\nHint: your Attention's {which} gives other results; check_attention says where"
            ) from None


# --------------------------------------------------------------------------- 01 patch embedding

# Square images, as the official code takes them: a 4 x 4 grid (its transpose is a different order).
PATCH_EMBED = dict(img_size=16, patch_size=4, in_chans=3, embed_dim=8)
PATCH_EMBED_RECT = dict(img_size=(16, 24), patch_size=8, in_chans=2, embed_dim=6)  # optional: a 2 x 3 grid


def _linear_order(reference, imgs, order):
    """PatchEmbed's output for a Linear proj that flattens each patch in `order` (a permutation of "cpq").

    proj.weight is the Conv2d weight (D, C, p, p) flattened as (c, p, q), which is what F.unfold gives;
    flattening the patch in another order pairs each weight with the wrong pixel.
    """
    weight = reference.proj.weight
    D, C, p, _ = weight.shape
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
            (want.transpose(1, 2), "the embedding dimension must come last: (B, L, D); did you forget .transpose(1, 2)?"),
            (grid.transpose(1, 2).reshape(2, h * w, D),
             "the patches are in column order; patch index must run row by row: index = row * w + col "
             "(flatten (B, D, h, w) with .flatten(2), not after swapping h and w)"),
            (reference.proj(imgs).reshape(2, -1, D),
             "reshaping (B, D, h, w) straight to (B, L, D) mixes channels and positions: "
             "flatten(2) to (B, D, L), then transpose(1, 2)"),
            (reference.proj(imgs), "the output must be a sequence (B, L, D); flatten the (h, w) grid of patches"),
            (overlapping, "the patches overlap: the Conv2d needs kernel_size = stride = patch_size"),
        ] + [
            (_linear_order(reference, imgs, order),
             f"the pixels inside each patch are flattened in the wrong order ({', '.join(order)}) for proj.weight: "
             "a Linear proj holds the Conv2d weight (D, C, p, p) flattened, so flatten each patch as (c, p, q), "
             "channel first, as F.unfold does")
            for order in ("pqc", "qpc", "cqp")
        ]  # fmt: skip
    _compare("PatchEmbed output", got, want, ("image", "patch", "channel"), mistakes)


def check_patch_embed(PatchEmbed: type) -> None:
    _check_patch_embed_on(PatchEmbed, PATCH_EMBED, seed=10)
    note = _optional(
        "(16, 24) images with 2 channels",
        lambda: _check_patch_embed_on(PatchEmbed, PATCH_EMBED_RECT, seed=11),
    )
    _ok(f"PatchEmbed: (2, 3, 16, 16) images -> (2, 16, 8) tokens, row by row, as the reference{note}")


# --------------------------------------------------------------------------- 02 position embedding


def _swap_halves(table, dim):
    """Swap the two halves of the last dimension of every `dim`-wide block."""
    blocks = table.reshape(*table.shape[:-1], -1, 2, dim // 2)
    return blocks.flip(-2).reshape(table.shape)


def _sincos(dim, grid_h, grid_w, denominator=None, interleave=False, grows=False, xy=False, first_k=0):
    """A sin-cos table (h*w, dim) built with one of the classic mistakes, to recognise it.

    denominator: omega_k = 1 / 10000 ** (k / denominator), correct is dim / 4; interleave: sin, cos,
    sin, cos, ... instead of all sines then all cosines; grows: 10000 ** (k / ...) without the 1 /;
    xy: torch.meshgrid(arange(h), arange(w), indexing="xy"), which swaps the roles of rows and columns;
    first_k: k = first_k .. first_k + dim / 4 - 1, correct is 0.
    """
    k = first_k + torch.arange(dim // 4, dtype=torch.float64)
    omega = 10000.0 ** (k / (denominator or dim / 4))
    omega = omega if grows else 1 / omega
    rows, cols = torch.meshgrid(
        torch.arange(grid_h, dtype=torch.float64),
        torch.arange(grid_w, dtype=torch.float64),
        indexing="xy" if xy else "ij",
    )

    def one_d(pos):
        angles = pos.reshape(-1, 1) * omega
        parts = [angles.sin(), angles.cos()]
        return torch.stack(parts, -1).flatten(1) if interleave else torch.cat(parts, 1)

    return torch.cat([one_d(cols), one_d(rows)], 1)


def _pos_embed_mistakes(dim, grid_h, grid_w, cls_token):
    """(the table a classic mistake gives, its hint) for get_2d_sincos_pos_embed(dim, (h, w), cls_token)."""
    want = ref.get_2d_sincos_pos_embed(dim, (grid_h, grid_w), cls_token=cls_token)
    no_cls = ref.get_2d_sincos_pos_embed(dim, (grid_h, grid_w))
    zero = torch.zeros(1, dim, dtype=torch.float64)

    def cls(table):
        return torch.cat([zero, table]) if cls_token else table

    # On a square grid, indexing="xy" gives the same table as swapping the halves: name both causes.
    swapped = (
        "the row and column halves are swapped: the first half of the channels must encode the column (w), "
        'the second the row (h). Likely cause: torch.meshgrid(..., indexing="xy") (use "ij"), or [rows, cols] '
        "concatenated instead of [cols, rows]"
    )
    xy = 'rows and columns are mixed up: torch.meshgrid(arange(h), arange(w)) needs indexing="ij" ("xy" swaps them)'
    xy_table = _sincos(dim, grid_h, grid_w, xy=True)
    mistakes = [
        (_swap_halves(want, dim), swapped),
        (cls(xy_table), xy),
        (cls(_swap_halves(xy_table, dim)), xy),
        (_swap_halves(want, dim // 2), "sin and cos are swapped: each half is [sin(pos * omega), cos(pos * omega)], sines first"),
        (_swap_halves(_swap_halves(want, dim), dim // 2), "both the row/column halves and the sin/cos halves are swapped"),
        (cls(_sincos(dim, grid_h, grid_w, interleave=True)),
         "sin and cos are interleaved (sin, cos, sin, cos, ...); each half must be all the sines, then all the cosines: "
         "torch.cat([sin, cos], dim=1), not torch.stack(..., dim=-1)"),
        (cls(_sincos(dim, grid_h, grid_w, denominator=dim / 2)),
         f"the frequencies are wrong: omega_k = 1 / 10000 ** (k / {dim // 4}), dividing k by half the width of the "
         f"1-D embedding (D/4 = {dim // 4}, as (2i) / d with d = D/2), not by its width D/2 = {dim // 2}"),
        (cls(_sincos(dim, grid_h, grid_w, denominator=dim)),
         f"the frequencies are wrong: omega_k = 1 / 10000 ** (k / {dim // 4}), dividing k by D/4 = {dim // 4}, not by the full width D = {dim}"),
        (cls(_sincos(dim, grid_h, grid_w, grows=True)),
         "the frequencies must decrease: omega_k = 1 / 10000 ** (k / (D/4)); the 1 / is missing"),
        (cls(_sincos(dim, grid_h, grid_w, first_k=1)),
         f"the frequencies are off by one: k runs 0 .. D/4 - 1 = {dim // 4 - 1} (torch.arange({dim // 4})), "
         f"so the first is omega_0 = 1; you used k = 1 .. {dim // 4}"),
    ]  # fmt: skip
    if cls_token:
        mistakes += [
            (no_cls, "with cls_token=True, prepend one all-zero row for the CLS token"),
            (torch.cat([no_cls[:1], no_cls]), "the CLS row must be all zeros: prepend torch.zeros(1, embed_dim)"),
            (torch.cat([no_cls, zero]), "the CLS row goes first (position 0), not last: torch.cat([zeros, table])"),
        ]  # fmt: skip
    return want, mistakes


def _check_pos_embed_on(get_2d_sincos_pos_embed, dim, grid, cls_token):
    grid_h, grid_w = (grid, grid) if isinstance(grid, int) else grid
    call = f"get_2d_sincos_pos_embed({dim}, {grid}{', cls_token=True' if cls_token else ''})"
    kwargs = dict(cls_token=True) if cls_token else {}
    got = _tensor(call, _call(call, get_2d_sincos_pos_embed, dim, grid, **kwargs))
    want, mistakes = _pos_embed_mistakes(dim, grid_h, grid_w, cls_token)
    first = "0 = CLS, then " if cls_token else ""
    axes = (f"position ({first}row * {grid_w} + col{' + 1' if cls_token else ''})", "channel")
    _compare(call, got, want, axes, mistakes)


def check_pos_embed(get_2d_sincos_pos_embed: Callable) -> None:
    _check_pos_embed_on(get_2d_sincos_pos_embed, 16, 4, cls_token=True)
    _check_pos_embed_on(get_2d_sincos_pos_embed, 8, 3, cls_token=False)
    note = _optional(
        "a (2, 3) grid (h, w)", lambda: _check_pos_embed_on(get_2d_sincos_pos_embed, 8, (2, 3), False)
    )
    _ok(f"get_2d_sincos_pos_embed: columns then rows, [sin, cos] in each half, zero CLS row{note}")


# --------------------------------------------------------------------------- 03 random masking


def _is_permutation(ids):
    """True if every row of `ids` (N, L) holds each of 0 .. L-1 once."""
    order = torch.arange(ids.shape[-1], dtype=torch.float64)
    return ids.ndim == 2 and torch.equal(ids.double().sort(dim=1).values, order.expand(ids.shape))


def _removes(mask, n_removed):
    """True if every row of `mask` is 0s and 1s with n_removed 1s."""
    m = mask.double()
    return bool(((m == 0) | (m == 1)).all()) and bool((m.sum(dim=1) == n_removed).all())


def _own_order_of_ids(ids):
    if _is_permutation(ids):
        return (
            "ids_restore is a permutation, but not the one the given noise makes: ids_shuffle = argsort(noise, dim=1), "
            "ids_restore = argsort(ids_shuffle, dim=1). Did you draw your own random order (torch.randperm)?"
        )


def _own_order_of_mask(n_removed, len_keep, cause):
    def hint(mask):
        if _removes(mask, n_removed):
            return (
                f"it removes {n_removed} patches per image, the right number, but not the ones the given noise picks "
                f"(those whose rank in argsort(noise, dim=1) is >= len_keep = {len_keep}). {cause}"
            )

    return hint


def check_random_masking(random_masking: Callable) -> None:
    x = _inputs(2, 10, 3)
    noise = _noise(2, 10)
    ratio = 0.65  # keeps int(10 * 0.35) = 3 patches, while round() would keep 4
    want_x, want_mask, want_ids = ref.random_masking(x, ratio, noise=noise)
    out = _call("random_masking(x, 0.65, noise=noise)", random_masking, x, ratio, noise=noise)
    if not isinstance(out, tuple) or len(out) != 3:
        raise AssertionError("random_masking must return three things: (x_visible, mask, ids_restore)")
    got_x, got_mask, got_ids = (
        _tensor(name, v) for name, v in zip(("x_visible", "mask", "ids_restore"), out)
    )

    ids_shuffle = torch.argsort(noise, dim=1)
    descending = torch.argsort(noise, dim=1, descending=True)
    shuffled_mask = torch.ones(2, 10)
    shuffled_mask[:, :3] = 0
    kept_largest = torch.gather(x, 1, descending[:, :3, None].expand(-1, -1, 3))
    _compare("ids_restore", got_ids, want_ids, ("image", "patch"), [
        (ids_shuffle, "ids_restore must be the inverse permutation of the shuffle: ids_restore = argsort(ids_shuffle)"),
        (torch.argsort(descending, dim=1),
         "you sorted the noise in descending order; the patches with the SMALLEST noise are kept (ascending argsort)"),
        (torch.argsort(torch.argsort(noise, dim=0), dim=0),
         "sort along the patches, argsort(..., dim=1), not along the batch (dim=0)"),
    ], otherwise=_own_order_of_ids)  # fmt: skip
    _compare("x_visible", got_x, want_x, ("image", "kept token", "channel"), [
        (torch.gather(x, 1, ids_shuffle[:, :4, None].expand(-1, -1, 3)),
         "keep int(L * (1 - mask_ratio)) = int(10 * 0.35) = 3 patches (truncate, don't round)"),
        (kept_largest, "you kept the patches with the largest noise; keep the smallest (ascending argsort)"),
        (torch.gather(x, 1, want_ids[:, :3, None].expand(-1, -1, 3)),
         "gather the visible tokens with ids_shuffle[:, :len_keep], not with ids_restore"),
        (torch.empty(2, 3, 1),
         "the gather index must cover every channel: ids_keep.unsqueeze(-1).expand(-1, -1, D) (or .repeat(1, 1, D))"),
    ])  # fmt: skip
    _compare("mask", got_mask, want_mask, ("image", "patch"), [
        (1 - want_mask, "the mask must be 1 for REMOVED patches and 0 for kept ones"),
        (shuffled_mask, "the mask is not in the original patch order: did you gather it with ids_restore?"),
        (shuffled_mask.gather(1, ids_shuffle),
         "the mask is unshuffled the wrong way: gather it with ids_restore (or scatter it with ids_shuffle), "
         "not gather with ids_shuffle (or scatter with ids_restore)"),
    ], otherwise=_own_order_of_mask(7, 3, "Did you draw your own random order (torch.randperm)?"))  # fmt: skip
    if got_mask.dtype != torch.float32:
        raise AssertionError(f"the mask should be a float tensor (1.0 = removed), got dtype {got_mask.dtype}")

    # Leave the learner's random state as it was (the CPU's only: x is there).
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(0)
        _, default_mask, _ = _call("random_masking(x, 0.65)", random_masking, x, ratio)
        torch.default_generator.manual_seed(0)
        _, rand_mask, _ = ref.random_masking(x, ratio, noise=torch.rand(2, 10))
    if not torch.equal(_tensor("mask", default_mask).float(), rand_mask):
        raise AssertionError(
            "without noise=, draw it as torch.rand(N, L) (the official masking does exactly this)"
        )
    _ok("random_masking: 3 of 10 patches kept, mask in the original order, ids_restore inverts the shuffle")


# --------------------------------------------------------------------------- 04 attention


NOT_SCALED = "the attention scores are not scaled: multiply q k^T by head_dim ** -0.5"
SCALED_BY_DIM = "scale by head_dim ** -0.5 (the width of one head), not by dim ** -0.5"
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


def _attention_variants(attn, x):
    """Outputs of the classic attention mistakes, computed from the reference module."""
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
        (finish((scores / hd).softmax(-1) @ v),
         "q k^T is scaled twice (by 1 / head_dim): F.scaled_dot_product_attention already scales by head_dim ** -0.5, "
         "so do not multiply q by self.scale before it"),
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
        ((scores / hd).softmax(-1), "q k^T is scaled twice: multiply it by self.scale = head_dim ** -0.5 once"),
        ((scores * hd**-0.5).softmax(-2), SOFTMAX_OVER_QUERIES),
        ((scores.transpose(-2, -1) * hd**-0.5).softmax(-1), SCORES_TRANSPOSED),
        (scores * hd**-0.5, "attention_weights returns probabilities: apply the softmax over the keys (dim=-1)"),
        *[(((q @ k.transpose(-2, -1)) * hd**-0.5).softmax(-1), hint) for q, k, _, hint in wrong_splits],
        (want.mean(1), "return one (N, N) map per head, (B, heads, N, N), not their average"),
    ]  # fmt: skip


PATHS = {True: "fused path, fused_attn=True", False: "explicit path, fused_attn=False"}


def check_attention(Attention: type) -> None:
    reference = _randomise(ref.Attention(12, num_heads=3), seed=20).eval()
    yours = _call("Attention(12, num_heads=3)", Attention, 12, num_heads=3)
    _copy_weights("Attention", reference, yours)
    yours.eval()
    x = _inputs(2, 5, 12)
    axes = ("batch", "token", "channel")
    with torch.no_grad():
        want = reference(x)
        mistakes = _attention_variants(reference, x)
        got = _tensor("Attention output", _call("Attention.forward", yours, x))
        # A class with a fused_attn flag (timm's, the reference's) has two paths, the fused
        # F.scaled_dot_product_attention and the explicit softmax: both must be right.
        flag = getattr(yours, "fused_attn", None)
        other, raised = None, None
        if isinstance(flag, bool):
            yours.fused_attn = not flag
            try:
                call = f"Attention.forward on the {PATHS[not flag].replace(', ', ' (')})"
                other = _tensor("Attention output", _call(call, yours, x))
            except AssertionError as error:
                raised = error
            finally:
                yours.fused_attn = flag
    if raised is not None:  # the default path runs, the other does not
        _compare(f"Attention output ({PATHS[flag]})", got, want, axes, mistakes)
        raise AssertionError(
            f"{raised}\nHint: with your default, fused_attn={flag}, it runs and is right; the mistake is only on this path"
        ) from None
    paths = {"": got}
    if other is not None and not _close(got, other):  # your forward branches on fused_attn: check both
        paths = {f" ({PATHS[flag]})": got, f" ({PATHS[not flag]})": other}
    errors = {}
    for label, output in paths.items():
        try:
            _compare(f"Attention output{label}", output, want, axes, mistakes)
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
    note = " (fused and explicit paths)" if other is not None else ""
    if callable(getattr(yours, "attention_weights", None)):  # your own class may not have it: fine
        with torch.no_grad():
            got = _call("Attention.attention_weights(x)", yours.attention_weights, x)
            _compare("attention_weights(x)", got, reference.attention_weights(x), ("batch", "head", "query", "key"),
                     _attention_weights_variants(reference, x))  # fmt: skip
        note += "; attention_weights too"
    _ok(f"Attention: 3 heads of width 4, scaled dot products, softmax over keys, as the reference{note}")


# --------------------------------------------------------------------------- 05 transformer block


def _mlp_variants(mlp, x):
    fc1, fc2 = mlp.fc1, mlp.fc2
    return [
        (fc2(F.relu(fc1(x))), "the MLP uses ReLU; MAE's ViT uses GELU: Linear -> nn.GELU() -> Linear"),
        (
            fc2(F.gelu(fc1(x), approximate="tanh")),
            'the MLP uses the tanh approximation of GELU; use the exact one, nn.GELU() (approximate="none"), as timm\'s ViT',
        ),
        (fc2(fc1(x)), "the MLP has no activation: Linear -> GELU -> Linear"),
        (F.gelu(fc2(F.gelu(fc1(x)))), "the activation goes only between fc1 and fc2, not after fc2"),
    ]


def check_block(Block: type) -> None:
    reference = _randomise(ref.Block(12, num_heads=3, mlp_ratio=2.0), seed=30).eval()
    yours = _call("Block(12, num_heads=3, mlp_ratio=2.0)", Block, 12, num_heads=3, mlp_ratio=2.0)
    _copy_weights("Block", reference, yours)
    yours.eval()
    eps = {m.eps for m in yours.modules() if isinstance(m, torch.nn.LayerNorm)}
    if eps != {1e-6}:
        raise AssertionError(
            f"the LayerNorms should use eps=layer_norm_eps (1e-6, as MAE), got eps {sorted(eps)}"
        )
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            check_attention(type(yours.attn))
    except AssertionError as error:
        raise AssertionError(
            f"your Block's Attention is not right yet; pass check_attention first.\n{error}"
        ) from None
    x = _inputs(2, 5, 12) * 3 + 1  # not already normalised, so a missing norm shows
    r = reference
    with torch.no_grad():
        if callable(getattr(yours, "mlp", None)):  # the MLP on its own first, so that its mistakes are named
            tokens = _inputs(2, 5, 12, seed=5) * 2
            got = _call("Block.mlp", yours.mlp, tokens)
            mistakes = _mlp_variants(r.mlp, tokens)
            _compare("Block.mlp output", got, r.mlp(tokens), ("batch", "token", "channel"), mistakes)
        want = reference(x)
        got = _call("Block.forward", yours, x)
        h = x + r.attn(r.norm1(x))
        post = r.norm1(x + r.attn(x))
        normed = r.norm1(x) + r.attn(r.norm1(x))
        mistakes = [
            (r.norm2(post + r.mlp(post)), "this is post-norm; MAE's ViT is pre-norm: x + attn(norm1(x)), then x + mlp(norm2(x))"),
            (r.mlp(r.norm2(r.attn(r.norm1(x)))), "the residual connections are missing: add each sub-layer's output to x"),
            (r.attn(r.norm1(x)) + r.mlp(r.norm2(r.attn(r.norm1(x)))),
             "the residual connection around the attention is missing: x = x + attn(norm1(x))"),
            (r.mlp(r.norm2(h)), "the residual connection around the MLP is missing: x = x + mlp(norm2(x))"),
            (h + r.mlp(r.norm1(h)), "the MLP's input is normalised with norm1; use norm2: x + mlp(norm2(x)) (each sub-layer has its own LayerNorm)"),
            (x + r.attn(r.norm2(x)) + r.mlp(r.norm1(x + r.attn(r.norm2(x)))),
             "norm1 and norm2 are swapped: norm1 goes before the attention, norm2 before the MLP"),
            (x + r.attn(r.norm1(x)) + r.mlp(r.norm2(x)),
             "the MLP must see the output of the attention step (x after the first residual), not the block's input"),
            (r.norm2(normed) + r.mlp(r.norm2(normed)),
             "the residuals must add the un-normalised x: x = x + attn(norm1(x)), not norm1(x) + attn(norm1(x))"),
        ]  # fmt: skip
        _compare("Block output", got, want, ("batch", "token", "channel"), mistakes)
        _same_on_other_path(
            "Block output",
            yours,
            lambda: _call("Block.forward", yours, x),
            want,
            ("batch", "token", "channel"),
        )
    _ok("Block: pre-norm attention and MLP, each with a residual connection")


# --------------------------------------------------------------------------- 06-08 the model

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
RECT = "(16, 24) images with 2 channels"


def _models(MAE, config, seed, **overrides):
    config = {**config, **overrides}
    reference = _randomise(ref.MAE(**config), seed).eval()
    yours = _call("MAE(...)", MAE, **config)
    _copy_weights("MAE", reference, yours)
    return reference, yours.eval()


def _images(config, seed=0):
    size = config["img_size"]
    h, w = (size, size) if isinstance(size, int) else size
    return _inputs(2, config["in_chans"], h, w, seed=seed)


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


def _first_line(error):
    """The first line of an error's message, ending in a full stop (or its own ? or !)."""
    line = str(error).splitlines()[0].rstrip(". ")
    return line if line.endswith(("?", "!")) else line + "."


def _earlier_steps(yours, blocks=("blocks",), patch_embed=True, masking=True):
    """Check the parts of the learner's model that come from earlier steps, with those steps' checks.

    A wrong Attention makes the encoder's output wrong too; this says which step to fix, instead
    of blaming the step being checked. The reference's own parts are not checked again.
    """
    parts = []  # (step, what it is, its check, the learner's object)
    if patch_embed and isinstance(getattr(yours, "patch_embed", None), nn.Module):
        parts.append(("01", "PatchEmbed", check_patch_embed, type(yours.patch_embed)))
    for function in _globals_used(type(yours), "get_2d_sincos_pos_embed"):
        parts.append(("02", "get_2d_sincos_pos_embed", check_pos_embed, function))
    for function in _globals_used(type(yours), "random_masking") if masking else ():
        parts.append(("03", "random_masking", check_random_masking, function))
    for block in (block for name in blocks for block in getattr(yours, name, ())):
        if isinstance(getattr(block, "attn", None), nn.Module):
            parts.append(("04", "Attention", check_attention, type(block.attn)))
        parts.append(("05", "Block", check_block, type(block)))
    checked = [ref.PatchEmbed, ref.get_2d_sincos_pos_embed, ref.random_masking, ref.Attention, ref.Block]
    for step, role, check, part in sorted(parts, key=lambda part: part[0]):
        if any(part is done for done in checked):
            continue
        checked.append(part)
        _earlier_step_must_pass(check, part, f"your model's {role} (step {step})", "this check", step)


def _earlier_step_must_pass(check, obj, what, runner, step):
    """Run an earlier step's check quietly; if it fails, blame that step, quoting its first line."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            check(obj)
    except AssertionError as error:
        raise AssertionError(
            f"{what} is not right yet, and {runner} runs it: {_first_line(error)} "
            f"Fix step {step} first ({check.__name__})"
        ) from None


# torch.cat of a (1, 1, D) CLS token with (B, L, D) tokens: the known error of a CLS token not expanded.
CLS_NOT_EXPANDED = (
    r"Sizes of tensors must match except in dimension 1\. Expected size [12] but got size [12]\b"
)
EXPAND_CLS = [
    (CLS_NOT_EXPANDED, "expand the CLS token to the batch: (cls_token + pos_embed[:, :1]).expand(B, -1, -1)")
]


def _blame_earlier_methods(MAE, error):
    """forward is wrong: if the learner's forward_encoder or forward_decoder is, say that instead."""
    for step, method, check in (
        ("06", "forward_encoder", check_encoder),
        ("07", "forward_decoder", check_decoder),
    ):
        if getattr(MAE, method, None) is not getattr(ref.MAE, method):
            _earlier_step_must_pass(check, MAE, f"your {method} (step {step})", "forward", step)
    raise error


def _check_encoder_on(MAE, config, seed, parts=False):
    reference, yours = _models(MAE, config, seed)
    if parts:
        _earlier_steps(yours)
    imgs = _images(config)
    L = reference.patch_embed.num_patches
    keep = int(L * 0.25)
    noise = _noise(2, L)
    r = reference
    with torch.no_grad():
        want, want_mask, want_ids = reference.forward_encoder(imgs, 0.75, noise=noise)
        call = "forward_encoder(imgs, 0.75, noise=noise)"
        out = _call(call, yours.forward_encoder, imgs, 0.75, noise=noise, known=EXPAND_CLS)
        if not isinstance(out, tuple) or len(out) != 3:
            raise AssertionError("forward_encoder must return (latent, mask, ids_restore)")
        got, got_mask, got_ids = out

        def encode(tokens, cls, final_norm=True):
            x = torch.cat([cls.expand(2, -1, -1), tokens], dim=1)
            for block in r.blocks:
                x = block(x)
            return r.norm(x) if final_norm else x

        patches = r.patch_embed(imgs)
        visible, _, _ = ref.random_masking(patches + r.pos_embed[:, 1:], 0.75, noise=noise)
        all_tokens = patches + r.pos_embed[:, 1:]
        cls = r.cls_token + r.pos_embed[:, :1]
        mistakes = [
            (encode(all_tokens, cls),
             f"the encoder must see only the visible patches (1 CLS + {keep} tokens here): apply random_masking before the blocks"),
            (all_tokens[:, :keep], "prepend the CLS token and run the transformer blocks on the visible tokens"),
            (encode(visible, cls, final_norm=False), "apply the final LayerNorm self.norm"),
            (encode(ref.random_masking(patches, 0.75, noise=noise)[0] + r.pos_embed[:, 1 : 1 + keep], r.cls_token),
             "add the position embeddings BEFORE masking, so that each kept patch keeps its own position"),
            (encode(ref.random_masking(patches, 0.75, noise=noise)[0], cls),
             "add the position embeddings pos_embed[:, 1:] to the patch tokens (before masking)"),
        ]  # fmt: skip
    noise_not_passed = _own_order_of_mask(
        L - keep, keep, "Pass noise on: random_masking(x, mask_ratio, noise)"
    )
    _compare("mask", got_mask, want_mask, ("image", "patch"), otherwise=noise_not_passed)
    _compare("ids_restore", got_ids, want_ids, ("image", "patch"))
    axes = ("image", "token (0 = CLS)", "channel")
    _compare("latent", got, want, axes, mistakes)
    _same_on_other_path(
        "latent",
        yours,
        lambda: _call("forward_encoder", yours.forward_encoder, imgs, 0.75, noise=noise)[0],
        want,
        axes,
    )


def check_encoder(MAE: type) -> None:
    summary = "forward_encoder: position, then masking, then CLS; 1 + 4 of 16 tokens through the blocks"
    _square_then_rectangular(_check_encoder_on, MAE, 40, summary)


def _check_decoder_on(MAE, config, seed, parts=False):
    reference, yours = _models(MAE, config, seed)
    if parts:
        _earlier_steps(yours, blocks=("decoder_blocks",), patch_embed=False, masking=False)
    imgs = _images(config)
    L = reference.patch_embed.num_patches
    noise = _noise(2, L)
    r = reference
    with torch.no_grad():
        latent, _, ids_restore = reference.forward_encoder(imgs, 0.75, noise=noise)
        want = reference.forward_decoder(latent, ids_restore)
        got = _call("forward_decoder(latent, ids_restore)", yours.forward_decoder, latent, ids_restore)

        def decode(x, keep_cls=False, norm=True):
            for block in r.decoder_blocks:
                x = block(x)
            x = r.decoder_pred(r.decoder_norm(x) if norm else x)
            return x if keep_cls else x[:, 1:]

        x = r.decoder_embed(latent)
        Dd, n_masked = x.shape[-1], L + 1 - x.shape[1]
        index = ids_restore[..., None].expand(-1, -1, Dd)
        masks = r.mask_token.expand(2, n_masked, -1)
        shuffled = torch.cat([x[:, 1:], masks], dim=1)
        ordered = torch.gather(shuffled, 1, index)
        cls_in_unshuffle = torch.gather(torch.cat([x, masks], 1), 1, index)
        mistakes = [
            (decode(torch.cat([x[:, :1], shuffled], 1) + r.decoder_pos_embed),
             "the tokens are still in shuffled order: unshuffle them with torch.gather(..., ids_restore) before adding positions"),
            (decode(torch.cat([x[:, :1], ordered], 1)), "add decoder_pos_embed: the mask tokens need to know where they are"),
            (decode(torch.cat([x[:, :1], ordered], 1) + r.decoder_pos_embed, keep_cls=True),
             "drop the CLS token from the prediction: one prediction per patch, (B, L, p*p*C)"),
            (decode(torch.cat([x[:, :1], cls_in_unshuffle], 1) + r.decoder_pos_embed),
             "the CLS token went through the unshuffle: append the mask tokens to the patch tokens x[:, 1:] only, "
             "gather those with ids_restore, then put x[:, :1] back in front"),
            (decode(torch.cat([x[:, :1], torch.gather(torch.cat([masks, x[:, 1:]], 1), 1, index)], 1) + r.decoder_pos_embed),
             "append the mask tokens AFTER the visible tokens: the shuffle puts the kept patches first"),
            (decode(torch.cat([x[:, :1], ordered], 1) + r.decoder_pos_embed, norm=False), "apply decoder_norm before decoder_pred"),
            (decode(torch.cat([x[:, :1], ordered], 1) + r.decoder_pos_embed, keep_cls=True)[:, :L],
             "drop the CLS token's prediction, x[:, 1:]; you dropped the last patch's"),
            (r.decoder_pred(r.decoder_norm(_blocks(r.decoder_blocks, ordered + r.decoder_pos_embed[:, 1:]))),
             "keep the CLS token in the decoder (the blocks attend to it): put x[:, :1] back in front of the unshuffled tokens, "
             "add decoder_pos_embed, and drop it only after decoder_pred"),
        ]  # fmt: skip
    axes = ("image", "patch", "pixel value")
    _compare("forward_decoder output", got, want, axes, mistakes)
    _same_on_other_path(
        "forward_decoder output",
        yours,
        lambda: _call("forward_decoder", yours.forward_decoder, latent, ids_restore),
        want,
        axes,
    )


def _blocks(blocks, x):
    for block in blocks:
        x = block(x)
    return x


def check_decoder(MAE: type) -> None:
    summary = "forward_decoder: mask tokens appended, unshuffled with ids_restore, one prediction per patch"
    _square_then_rectangular(_check_decoder_on, MAE, 50, summary)


def _loss_mistakes(pred, target, mask, C, p):
    """(loss, hint) for the classic mistakes of the masked mean squared error, against `target`."""
    per_patch = ((pred - target) ** 2).mean(-1)
    masked = per_patch * mask
    n = p * p * C
    return [
        (per_patch.mean(), "the loss must average over the MASKED patches only: (loss * mask).sum() / mask.sum()"),
        ((per_patch * (1 - mask)).sum() / (1 - mask).sum(), "that is the loss on the visible patches; use mask == 1 (removed)"),
        (masked.sum() / mask.sum() * n,
         f"the error of each patch is summed over its p*p*C = {n} values; average it: ((pred - target) ** 2).mean(dim=-1)"),
        (masked.mean(), "divide by the number of masked patches, mask.sum(), not by the number of all patches"),
        (masked.sum(), "divide the summed loss by the number of masked patches, mask.sum()"),
        (((pred - target).abs().mean(-1) * mask).sum() / mask.sum(), "use the squared error (pred - target) ** 2, not the absolute error"),
    ]  # fmt: skip


def _check_mae_on(MAE, config, seed, parts=False):
    p, C = config["patch_size"], config["in_chans"]
    imgs = _images(config)
    B = imgs.shape[0]
    h, w = imgs.shape[2] // p, imgs.shape[3] // p
    L = h * w
    noise = _noise(2, L)
    reference, yours = _models(MAE, config, seed, norm_pix_loss=False)
    if parts:
        _earlier_steps(yours, blocks=("blocks", "decoder_blocks"))
    with torch.no_grad():
        want = reference.patchify(imgs)
        got = _call("patchify(imgs)", yours.patchify, imgs)
        grid = imgs.reshape(B, C, h, p, w, p)
        mistakes = [
            (grid.permute(0, 2, 4, 1, 3, 5).reshape(B, L, -1),
             "inside a patch the pixels must be ordered (p, q, c), channel last: 'nchpwq -> nhwpqc'"),
            (grid.permute(0, 4, 2, 3, 5, 1).reshape(B, L, -1), "patches must go row by row (h before w): 'nchpwq -> nhwpqc'"),
            (grid.permute(0, 2, 4, 5, 3, 1).reshape(B, L, -1), "inside a patch the row p comes before the column q: 'nhwpqc'"),
            (imgs.reshape(B, L, -1), "cut the image into p x p patches: reshape to (B, C, h, p, w, p) and reorder 'nchpwq -> nhwpqc'; a plain reshape mixes rows of different patches"),
        ]  # fmt: skip
        _compare("patchify", got, want, ("image", "patch", "pixel value"), mistakes)
        back = _call("unpatchify(patchify(imgs))", yours.unpatchify, want)
        _compare("unpatchify(patchify(imgs))", back, imgs, ("image", "channel", "row", "column"), [
            (want.reshape(imgs.shape), "unpatchify must undo patchify exactly: reshape to (B, h, w, p, p, C) and reorder 'nhwpqc -> nchpwq'"),
            (F.fold(want.transpose(1, 2), imgs.shape[2:], p, stride=p),
             "F.fold reads each patch as (c, p, q), channel first, but patchify lays it out (p, q, c): reshape to "
             "(B, h, w, p, p, C) and reorder 'nhwpqc -> nchpwq' (or permute each patch to (c, p, q) before F.fold)"),
        ])  # fmt: skip

        # The first row of patches is nearly flat (variance ~1e-6), where the place of the eps matters.
        imgs = imgs.clone()
        imgs[:, :, :p] = 0.3 + 1e-3 * imgs[:, :, :p]
        pred = _inputs(2, L, p * p * C, seed=3)
        _, mask, _ = ref.random_masking(torch.zeros(2, L, 1), 0.75, noise=noise)
        target = reference.patchify(imgs)
        mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        normed = (target - mean) / (var + 1e-6) ** 0.5

        def masked_mse(target):
            return (((pred - target) ** 2).mean(-1) * mask).sum() / mask.sum()

        want = reference.forward_loss(imgs, pred, mask)
        got = _call("forward_loss(imgs, pred, mask)", yours.forward_loss, imgs, pred, mask)
        mistakes = [
            (masked_mse(normed), "forward_loss normalises the targets although norm_pix_loss=False; normalise only if self.norm_pix_loss"),
        ] + _loss_mistakes(pred, target, mask, C, p)  # fmt: skip
        _compare("forward_loss (norm_pix_loss=False)", _tensor("loss", got).reshape(()), want, (), mistakes)

        out = _call(
            "forward(imgs, 0.75, noise=noise)", yours.forward, imgs, 0.75, noise=noise, known=EXPAND_CLS
        )
        if not isinstance(out, tuple) or len(out) != 3:
            raise AssertionError("forward must return (loss, pred, mask)")
        want_loss, want_pred, want_mask = reference(imgs, 0.75, noise=noise)
        try:
            _compare("forward: pred", out[1], want_pred, ("image", "patch", "pixel value"))
            _compare("forward: mask", out[2], want_mask, ("image", "patch"))
            _compare("forward: loss", _tensor("loss", out[0]).reshape(()), want_loss, ())
        except AssertionError as error:
            _blame_earlier_methods(MAE, error)
        _same_on_other_path(
            "forward: pred", yours, lambda: _call("forward", yours.forward, imgs, 0.75, noise=noise)[1],
            want_pred, ("image", "patch", "pixel value"),
        )  # fmt: skip

        reference, yours = _models(MAE, config, seed, norm_pix_loss=True)
        want = reference.forward_loss(imgs, pred, mask)
        got = _call("forward_loss(imgs, pred, mask)", yours.forward_loss, imgs, pred, mask)
        mistakes = [
            (masked_mse(target), "with norm_pix_loss=True, normalise each target patch by its own mean and variance"),
            (masked_mse((target - mean) / (target.var(-1, keepdim=True, unbiased=False) + 1e-6) ** 0.5),
             "use the unbiased variance, target.var(dim=-1) (torch's default), as the official code"),
            (masked_mse((target - mean) / (var**0.5 + 1e-6)), "the 1e-6 goes inside the square root: (var + 1e-6) ** 0.5"),
            (masked_mse((target - mean) / (var + 1e-6)), "divide by the standard deviation, (var + 1e-6) ** 0.5, not by the variance"),
            (masked_mse((target - target.mean()) / (target.var() + 1e-6) ** 0.5),
             "normalise each patch by its OWN mean and variance: .mean(dim=-1, keepdim=True), .var(dim=-1, keepdim=True)"),
        ] + _loss_mistakes(pred, normed, mask, C, p)  # fmt: skip
        _compare("forward_loss (norm_pix_loss=True)", _tensor("loss", got).reshape(()), want, (), mistakes)
        want_loss, _, _ = reference(imgs, 0.75, noise=noise)
        got = _call("forward(imgs, 0.75, noise=noise)", yours.forward, imgs, 0.75, noise=noise)
        _compare("forward: loss (norm_pix_loss=True)", _tensor("loss", got[0]).reshape(()), want_loss, ())


def check_mae(MAE: type) -> None:
    summary = "MAE: patchify 'nhwpqc' and its inverse, loss on masked patches only (norm_pix_loss off and on), forward"
    _square_then_rectangular(_check_mae_on, MAE, 60, summary)


# --------------------------------------------------------------------------- 12 the classifier

ENCODER_KEYS = [k for k in inspect.signature(ref.Encoder).parameters if k in TINY]  # the classifier's share
EXPAND_CLS_TOKEN = [
    (CLS_NOT_EXPANDED, "expand the CLS token to the batch before torch.cat: cls_token.expand(B, -1, -1)")
]


def _check_classifier_on(VisionTransformer, config, seed, parts=False):
    config = {k: v for k, v in config.items() if k in ENCODER_KEYS}
    imgs = _images(config)
    for global_pool in (True, False):
        reference = _randomise(ref.VisionTransformer(num_classes=5, global_pool=global_pool, **config), seed)
        reference.eval()
        # Position embeddings are trained when fine-tuning: not the sin-cos table any more.
        with torch.no_grad():
            reference.pos_embed.add_(0.5 * _inputs(*reference.pos_embed.shape, seed=4))
        what = f"VisionTransformer(num_classes=5, global_pool={global_pool}, ...)"
        yours = _call(what, VisionTransformer, num_classes=5, global_pool=global_pool, **config)
        _copy_weights(what, reference, yours)
        yours.eval()
        if parts and global_pool:  # the first model built
            _earlier_steps(yours, masking=False)
        r = reference
        with torch.no_grad():
            want = reference.forward_features(imgs)
            got = _call("forward_features(imgs)", yours.forward_features, imgs, known=EXPAND_CLS_TOKEN)

            def tokens(pos=True, r=reference):
                x = r.patch_embed(imgs)
                x = torch.cat([r.cls_token.expand(2, -1, -1), x], dim=1) + (r.pos_embed if pos else 0)
                for block in r.blocks:
                    x = block(x)
                return x

            x = tokens()
            if global_pool:
                mistakes = [
                    (r.fc_norm(x.mean(dim=1)), "average the PATCH tokens only, x[:, 1:].mean(dim=1): leave the CLS token out"),
                    (x[:, 1:].mean(dim=1), "normalise the pooled vector with self.fc_norm"),
                    (r.fc_norm(tokens(pos=False)[:, 1:].mean(dim=1)), "add self.pos_embed (CLS row included) before the blocks"),
                    (r.fc_norm(x[:, 0]), "global_pool=True averages the patch tokens; the CLS token is for global_pool=False"),
                    (r.fc_norm(x[:, 1:]).mean(dim=1), "average first, then apply fc_norm: fc_norm(x[:, 1:].mean(dim=1))"),
                ]  # fmt: skip
            else:
                mistakes = [
                    (x[:, 0], "apply the final LayerNorm self.norm before taking the CLS token"),
                    (r.norm(x)[:, 1:].mean(dim=1), "global_pool=False reads the CLS token, x[:, 0]"),
                    (r.norm(tokens(pos=False))[:, 0], "add self.pos_embed (CLS row included) before the blocks"),
                ]  # fmt: skip
            axes = ("image", "channel")
            _compare(f"forward_features (global_pool={global_pool})", got, want, axes, mistakes)
            _compare(f"forward (global_pool={global_pool})", _call("forward(imgs)", yours, imgs, known=EXPAND_CLS_TOKEN), reference(imgs),
                     ("image", "class"), [(want, "finish with self.head(features)")])  # fmt: skip
            _same_on_other_path(
                f"forward_features (global_pool={global_pool})", yours,
                lambda yours=yours: _call("forward_features(imgs)", yours.forward_features, imgs), want, axes,
            )  # fmt: skip


def check_classifier(VisionTransformer: type) -> None:
    summary = "VisionTransformer: every patch seen, CLS token (probe) or pooled patches + fc_norm (fine-tune), then head"
    _square_then_rectangular(_check_classifier_on, VisionTransformer, 70, summary)


# --------------------------------------------------------------------------- the terminal runner

STEPS = {  # step -> (its notebook, the check, which object of the implementation it takes)
    "patch_embed": (implementation.STEPS["patch_embed"], check_patch_embed, "PatchEmbed"),
    "pos_embed": (implementation.STEPS["pos_embed"], check_pos_embed, "get_2d_sincos_pos_embed"),
    "masking": (implementation.STEPS["masking"], check_random_masking, "random_masking"),
    "attention": (implementation.STEPS["attention"], check_attention, "Attention"),
    "transformer": (implementation.STEPS["transformer"], check_block, "Block"),
    "encoder": (implementation.STEPS["encoder"], check_encoder, "MAE"),
    "decoder": (implementation.STEPS["decoder"], check_decoder, "MAE"),
    "model": (implementation.STEPS["model"], check_mae, "MAE"),
    "classifier": (implementation.STEPS["classifier"], check_classifier, "VisionTransformer"),
}


def run_checks(steps: list[str] | None = None, impl: str | None = None) -> dict[str, str | None]:
    """Run the checks of `steps` (all by default); returns {step: error message, or None if it passes}.

    impl is "exercises" or "solutions"; None reads $MAE_IMPL, else your exercises/ (see mae.impl).
    A step you have not written yet is reported as such; the others are checked with your code,
    each on top of your other steps (the reference standing in for those not written yet).
    """
    name = implementation.resolve(impl, default="exercises")
    steps = steps or list(STEPS)
    module = importlib.import_module("solutions")
    unwritten = []
    if name == "exercises":
        broken = implementation.syntax_errors()
        if broken:  # nothing imports until they parse: say which, and check nothing else
            first = next(iter(broken.values())).split(" does")[0]
            return {step: broken.get(step, f"not checked: {first} must parse first") for step in steps}
        try:
            active = implementation.active() == name
            module = implementation.components() if active else implementation.select(name)
        except Exception as error:  # e.g. a NameError at the top of an exercise file
            return {step: f"your exercises do not import: {type(error).__name__}: {error}" for step in steps}
        unwritten = implementation.unwritten_steps()
    results = {}
    for step in steps:
        _, check, attribute = STEPS[step]
        if step in unwritten:
            results[step] = implementation.not_written_message(step)
            continue
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                check(getattr(module, attribute))
            results[step] = None
        except AssertionError as error:
            results[step] = str(error)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description="Check your exercises, step by step.")
    parser.add_argument("steps", nargs="*", metavar="step", help=f"any of: {', '.join(STEPS)} (default: all)")
    parser.add_argument(
        "--impl", choices=implementation.IMPLEMENTATIONS, help="whose code: $MAE_IMPL, else exercises"
    )
    args = parser.parse_args(argv)
    unknown = [step for step in args.steps if step not in STEPS]
    if unknown:
        parser.error(f"unknown step(s) {', '.join(unknown)}; choose from {', '.join(STEPS)}")
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    name = implementation.resolve(args.impl, default="exercises")
    results = run_checks(args.steps or None, name)
    print()
    for step, error in results.items():
        number = STEPS[step][0]
        if error is None:
            print(f"  \u2713 {number} {step}")
        else:
            first, *rest = error.splitlines()
            print(f"  \u2717 {number} {step}: {first}")
            for line in rest:
                print(f"        {line}")
    passed = sum(error is None for error in results.values())
    print(f"\n{passed} of {len(results)} steps pass ({name}/).")
    failing = [step for step, error in results.items() if error is not None]
    if failing:
        print(f"Next: open {name}/{failing[0]}.py (notebook {STEPS[failing[0]][0]}).")
    return 0 if not failing else 1


if __name__ == "__main__":
    sys.exit(main())
