"""Check 03: per-sample random masking: the kept tokens, the mask in the original patch order, ids_restore."""

from collections.abc import Callable

import torch

from .. import models as ref
from ..i18n import _
from .harness import _call, _compare, _inputs, _noise, _ok, _tensor, learner_facing


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
        return _(
            "ids_restore is a permutation, but not the one the given noise makes: ids_shuffle = argsort(noise, dim=1), "
            "ids_restore = argsort(ids_shuffle, dim=1). Did you draw your own random order (torch.randperm)?"
        )


def _own_order_of_mask(n_removed, len_keep, cause):
    def hint(mask):
        if _removes(mask, n_removed):
            return _(
                "it removes {n_removed} patches per image, the right number, but not the ones the given noise picks "
                "(those whose rank in argsort(noise, dim=1) is >= len_keep = {len_keep}). {cause}"
            ).format(n_removed=n_removed, len_keep=len_keep, cause=cause)

    return hint


@learner_facing
def check_random_masking(random_masking: Callable) -> None:
    x = _inputs(2, 10, 3)
    noise = _noise(2, 10)
    ratio = 0.65  # keeps int(10 * 0.35) = 3 patches, while round() would keep 4
    want_x, want_mask, want_ids = ref.random_masking(x, ratio, noise=noise)
    out = _call("random_masking(x, 0.65, noise=noise)", random_masking, x, ratio, noise=noise)
    if not isinstance(out, tuple) or len(out) != 3:
        raise AssertionError(_("random_masking must return three things: (x_visible, mask, ids_restore)"))
    got_x, got_mask, got_ids = (
        _tensor(name, v) for name, v in zip(("x_visible", "mask", "ids_restore"), out)
    )

    ids_shuffle = torch.argsort(noise, dim=1)
    descending = torch.argsort(noise, dim=1, descending=True)
    shuffled_mask = torch.ones(2, 10)
    shuffled_mask[:, :3] = 0
    kept_largest = torch.gather(x, 1, descending[:, :3, None].expand(-1, -1, 3))
    never_shuffled = _(
        "the tokens are not shuffled: the first len_keep tokens are kept, the same ones for every image. argsort "
        "the noise, ids_shuffle = argsort(noise, dim=1), and keep the tokens of ids_shuffle[:, :len_keep]"
    )
    _compare("ids_restore", got_ids, want_ids, ("image", "patch"), [
        (torch.arange(10).expand(2, 10), never_shuffled),
        (ids_shuffle, _("ids_restore must be the inverse permutation of the shuffle: ids_restore = argsort(ids_shuffle)")),
        (torch.argsort(descending, dim=1),
         _("you sorted the noise in descending order; the patches with the SMALLEST noise are kept (ascending argsort)")),
        (torch.argsort(torch.argsort(noise, dim=0), dim=0),
         _("sort along the patches, argsort(..., dim=1), not along the batch (dim=0)")),
    ], otherwise=_own_order_of_ids)  # fmt: skip
    _compare("x_visible", got_x, want_x, ("image", "kept token", "channel"), [
        (x[:, :3], never_shuffled),
        (torch.gather(x, 1, ids_shuffle[:, :4, None].expand(-1, -1, 3)),
         _("keep int(L * (1 - mask_ratio)) = int(10 * 0.35) = 3 patches (truncate, don't round)")),
        (kept_largest, _("you kept the patches with the largest noise; keep the smallest (ascending argsort)")),
        (torch.gather(x, 1, want_ids[:, :3, None].expand(-1, -1, 3)),
         _("gather the visible tokens with ids_shuffle[:, :len_keep], not with ids_restore")),
        (torch.empty(2, 3, 1),
         _("the gather index must cover every channel: ids_keep.unsqueeze(-1).expand(-1, -1, D) (or .repeat(1, 1, D))")),
    ])  # fmt: skip
    _compare("mask", got_mask, want_mask, ("image", "patch"), [
        (1 - want_mask, _("the mask must be 1 for REMOVED patches and 0 for kept ones")),
        (shuffled_mask, _("the mask is not in the original patch order: did you gather it with ids_restore?")),
        (shuffled_mask.gather(1, ids_shuffle),
         _("the mask is unshuffled the wrong way: gather it with ids_restore (or scatter it with ids_shuffle), "
           "not gather with ids_shuffle (or scatter with ids_restore)")),
    ], otherwise=_own_order_of_mask(7, 3, _("Did you draw your own random order (torch.randperm)?")))  # fmt: skip
    if got_mask.dtype != torch.float32:
        raise AssertionError(
            _("the mask should be a float tensor (1.0 = removed), got dtype {dtype}").format(
                dtype=got_mask.dtype
            )
        )

    # Leave the learner's random state as it was (the CPU's only: x is there).
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(0)
        default_mask = _call("random_masking(x, 0.65)", random_masking, x, ratio)[1]
        torch.default_generator.manual_seed(0)
        rand_mask = ref.random_masking(x, ratio, noise=torch.rand(2, 10))[1]
    if not torch.equal(_tensor("mask", default_mask).float(), rand_mask):
        raise AssertionError(
            _("without noise=, draw it as torch.rand(N, L) (the official masking does exactly this)")
        )
    _ok(
        _("random_masking: 3 of 10 patches kept, mask in the original order, ids_restore inverts the shuffle")
    )
