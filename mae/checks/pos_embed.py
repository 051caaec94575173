"""Check 02: the fixed 2-D sin-cos position table, with the classic mistakes (halves swapped, interleaved, x and y
exchanged, another denominator) computed from the reference."""

from collections.abc import Callable

import torch

from .. import models as ref
from ..i18n import _
from .harness import _call, _compare, _ok, _optional, _tensor, learner_facing


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
    swapped = _(
        "the row and column halves are swapped: the first half of the channels must encode the column (w), "
        'the second the row (h). Likely cause: torch.meshgrid(..., indexing="xy") (use "ij"), or [rows, cols] '
        "concatenated instead of [cols, rows]"
    )
    xy = _(
        'rows and columns are mixed up: torch.meshgrid(arange(h), arange(w)) needs indexing="ij" ("xy" swaps them)'
    )
    xy_table = _sincos(dim, grid_h, grid_w, xy=True)
    mistakes = [
        (_swap_halves(want, dim), swapped),
        (cls(xy_table), xy),
        (cls(_swap_halves(xy_table, dim)), xy),
        (_swap_halves(want, dim // 2), _("sin and cos are swapped: each half is [sin(pos * omega), cos(pos * omega)], sines first")),
        (_swap_halves(_swap_halves(want, dim), dim // 2), _("both the row/column halves and the sin/cos halves are swapped")),
        (cls(_sincos(dim, grid_h, grid_w, interleave=True)),
         _("sin and cos are interleaved (sin, cos, sin, cos, ...); each half must be all the sines, then all the cosines: "
           "torch.cat([sin, cos], dim=1), not torch.stack(..., dim=-1)")),
        (cls(_sincos(dim, grid_h, grid_w, denominator=dim / 2)),
         _("the frequencies are wrong: omega_k = 1 / 10000 ** (k / {quarter}), dividing k by half the width of the "
           "1-D embedding (D/4 = {quarter}, as (2i) / d with d = D/2), not by its width D/2 = {half}").format(
             quarter=dim // 4, half=dim // 2)),
        (cls(_sincos(dim, grid_h, grid_w, denominator=dim)),
         _("the frequencies are wrong: omega_k = 1 / 10000 ** (k / {quarter}), dividing k by D/4 = {quarter}, not by the "
           "full width D = {dim}").format(quarter=dim // 4, dim=dim)),
        (cls(_sincos(dim, grid_h, grid_w, grows=True)),
         _("the frequencies must decrease: omega_k = 1 / 10000 ** (k / (D/4)); the 1 / is missing")),
        (cls(_sincos(dim, grid_h, grid_w, first_k=1)),
         _("the frequencies are off by one: k runs 0 .. D/4 - 1 = {last} (torch.arange({quarter})), "
           "so the first is omega_0 = 1; you used k = 1 .. {quarter}").format(last=dim // 4 - 1, quarter=dim // 4)),
    ]  # fmt: skip
    if cls_token:
        mistakes += [
            (no_cls, _("with cls_token=True, prepend one all-zero row for the CLS token")),
            (torch.cat([no_cls[:1], no_cls]), _("the CLS row must be all zeros: prepend torch.zeros(1, embed_dim)")),
            (torch.cat([no_cls, zero]), _("the CLS row goes first (position 0), not last: torch.cat([zeros, table])")),
        ]  # fmt: skip
    return want, mistakes


def _check_pos_embed_on(get_2d_sincos_pos_embed, dim, grid, cls_token):
    grid_h, grid_w = (grid, grid) if isinstance(grid, int) else grid
    call = f"get_2d_sincos_pos_embed({dim}, {grid}{', cls_token=True' if cls_token else ''})"
    kwargs = dict(cls_token=True) if cls_token else {}
    got = _tensor(call, _call(call, get_2d_sincos_pos_embed, dim, grid, **kwargs))
    want, mistakes = _pos_embed_mistakes(dim, grid_h, grid_w, cls_token)
    if cls_token:
        position = _("position (0 = CLS, then row * {grid_w} + col + 1)").format(grid_w=grid_w)
    else:
        position = _("position (row * {grid_w} + col)").format(grid_w=grid_w)
    axes = (position, "channel")
    _compare(call, got, want, axes, mistakes)


@learner_facing
def check_pos_embed(get_2d_sincos_pos_embed: Callable) -> None:
    _check_pos_embed_on(get_2d_sincos_pos_embed, 16, 4, cls_token=True)
    _check_pos_embed_on(get_2d_sincos_pos_embed, 8, 3, cls_token=False)
    note = _optional(
        _("a (2, 3) grid (h, w)"), lambda: _check_pos_embed_on(get_2d_sincos_pos_embed, 8, (2, 3), False)
    )
    _ok(
        _("get_2d_sincos_pos_embed: columns then rows, [sin, cos] in each half, zero CLS row{note}").format(
            note=note
        )
    )
