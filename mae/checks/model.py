"""Checks 06-08: the encoder (forward_encoder), the decoder (forward_decoder), and the whole MAE (patchify,
unpatchify, the loss on masked patches, norm_pix_loss, forward)."""

import torch
import torch.nn.functional as F

from .. import models as ref
from ..i18n import N_, _
from .harness import (
    _call,
    _compare,
    _earlier_step_must_pass,
    _inputs,
    _noise,
    _same_on_other_path,
    _tensor,
    learner_facing,
)
from .masking import _own_order_of_mask
from .parts import CLS_NOT_EXPANDED, _earlier_steps, _images, _models, _square_then_rectangular

EXPAND_CLS_HINT = N_("expand the CLS token to the batch: (cls_token + pos_embed[:, :1]).expand(B, -1, -1)")


def _expand_cls():
    """The known mistake of forward and forward_encoder, its hint in the language at the time of the check."""
    return [(CLS_NOT_EXPANDED, _(EXPAND_CLS_HINT))]


def _blame_earlier_methods(MAE, error):
    """forward is wrong: if the learner's forward_encoder or forward_decoder is, say that instead."""
    for step, method, check in (
        ("06", "forward_encoder", check_encoder),
        ("07", "forward_decoder", check_decoder),
    ):
        if getattr(MAE, method, None) is not getattr(ref.MAE, method):
            _earlier_step_must_pass(
                check, MAE, _("your {method} (step {step})").format(method=method, step=step), "forward", step
            )
    raise error


def _check_encoder_on(MAE, config, seed, parts=None):
    reference, yours = _models(MAE, config, seed)
    if parts:
        _earlier_steps(yours, parts)
    imgs = _images(config)
    L = reference.patch_embed.num_patches
    keep = int(L * 0.25)
    noise = _noise(2, L)
    r = reference
    with torch.no_grad():
        want, want_mask, want_ids = reference.forward_encoder(imgs, 0.75, noise=noise)
        call = "forward_encoder(imgs, 0.75, noise=noise)"
        out = _call(call, yours.forward_encoder, imgs, 0.75, noise=noise, known=_expand_cls())
        if not isinstance(out, tuple) or len(out) != 3:
            raise AssertionError(_("forward_encoder must return (latent, mask, ids_restore)"))
        got, got_mask, got_ids = out

        def encode(tokens, cls, final_norm=True):
            x = torch.cat([cls.expand(2, -1, -1), tokens], dim=1)
            for block in r.blocks:
                x = block(x)
            return r.norm(x) if final_norm else x

        patches = r.patch_embed(imgs)
        visible = ref.random_masking(patches + r.pos_embed[:, 1:], 0.75, noise=noise)[0]
        all_tokens = patches + r.pos_embed[:, 1:]
        cls = r.cls_token + r.pos_embed[:, :1]
        mistakes = [
            (encode(all_tokens, cls),
             _("the encoder must see only the visible patches (1 CLS + {keep} tokens here): apply random_masking before the blocks").format(keep=keep)),
            (all_tokens[:, :keep], _("prepend the CLS token and run the transformer blocks on the visible tokens")),
            (encode(visible, cls, final_norm=False), _("apply the final LayerNorm self.norm")),
            (encode(ref.random_masking(patches, 0.75, noise=noise)[0] + r.pos_embed[:, 1 : 1 + keep], r.cls_token),
             _("add the position embeddings BEFORE masking, so that each kept patch keeps its own position")),
            (encode(ref.random_masking(patches, 0.75, noise=noise)[0], cls),
             _("add the position embeddings pos_embed[:, 1:] to the patch tokens (before masking)")),
            (_cls_last(r, visible, cls),
             _("the CLS token goes FIRST: torch.cat([cls_tokens, x], dim=1); the decoder and the classifier read it at index 0")),
        ]  # fmt: skip
    noise_not_passed = _own_order_of_mask(
        L - keep, keep, _("Pass noise on: random_masking(x, mask_ratio, noise)")
    )
    _compare("mask", got_mask, want_mask, ("image", "patch"), otherwise=noise_not_passed)
    _compare("ids_restore", got_ids, want_ids, ("image", "patch"))
    axes = ("image", N_("token (0 = CLS)"), "channel")
    _compare("latent", got, want, axes, mistakes)
    _same_on_other_path(
        "latent",
        yours,
        lambda: _call("forward_encoder", yours.forward_encoder, imgs, 0.75, noise=noise)[0],
        want,
        axes,
    )
    _mask_ratio_passed_on(reference, yours, imgs, noise)


def _cls_last(r, visible, cls):
    """The encoder's output with the CLS token appended after the visible tokens instead of before them."""
    x = torch.cat([visible, cls.expand(visible.shape[0], -1, -1)], dim=1)
    for block in r.blocks:
        x = block(x)
    return r.norm(x)


def _mask_ratio_passed_on(reference, yours, imgs, noise):
    """forward_encoder at another ratio (0.5): a ratio fixed in the learner's code masks 75% whatever it is asked."""
    with torch.no_grad():
        want, want_mask = reference.forward_encoder(imgs, 0.5, noise=noise)[:2]
        out = _call("forward_encoder(imgs, 0.5, noise=noise)", yours.forward_encoder, imgs, 0.5, noise=noise)
    got_mask = _tensor("mask", out[1])
    removed = int(got_mask.sum(dim=1)[0]) if got_mask.ndim == 2 else None
    if removed is not None and removed != int(want_mask.sum(dim=1)[0]):
        raise AssertionError(
            _("forward_encoder(imgs, mask_ratio=0.5, ...) removed {removed} of {count} patches per image, not "
              "{wanted}: the ratio it is given must reach the masking; pass it on to random_masking(x, mask_ratio, "
              "noise) instead of a fixed 0.75").format(removed=removed, count=got_mask.shape[1], wanted=int(want_mask.sum(dim=1)[0]))
        )  # fmt: skip
    _compare("latent (mask_ratio=0.5)", out[0], want, ("image", N_("token (0 = CLS)"), "channel"))


@learner_facing
def check_encoder(MAE: type, *, earlier_checks: dict | None = None) -> None:
    summary = _("forward_encoder: position, then masking, then CLS; 1 + 4 of 16 tokens through the blocks")
    _square_then_rectangular(_check_encoder_on, MAE, 40, summary, earlier_checks)


def _check_decoder_on(MAE, config, seed, parts=None):
    reference, yours = _models(MAE, config, seed)
    if parts:
        _earlier_steps(yours, parts, blocks=("decoder_blocks",), patch_embed=False, masking=False)
    imgs = _images(config)
    L = reference.patch_embed.num_patches
    noise = _noise(2, L)
    r = reference
    with torch.no_grad():
        latent, _mask, ids_restore = reference.forward_encoder(imgs, 0.75, noise=noise)
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
             _("the tokens are still in shuffled order: unshuffle them with torch.gather(..., ids_restore) before adding positions")),
            (decode(torch.cat([x[:, :1], ordered], 1)), _("add decoder_pos_embed: the mask tokens need to know where they are")),
            (decode(torch.cat([x[:, :1], ordered], 1) + r.decoder_pos_embed, keep_cls=True),
             _("drop the CLS token from the prediction: one prediction per patch, (B, L, p*p*C)")),
            (decode(torch.cat([x[:, :1], cls_in_unshuffle], 1) + r.decoder_pos_embed),
             _("the CLS token went through the unshuffle: append the mask tokens to the patch tokens x[:, 1:] only, "
               "gather those with ids_restore, then put x[:, :1] back in front")),
            (decode(torch.cat([x[:, :1], torch.gather(torch.cat([masks, x[:, 1:]], 1), 1, index)], 1) + r.decoder_pos_embed),
             _("append the mask tokens AFTER the visible tokens: the shuffle puts the kept patches first")),
            (decode(torch.cat([x[:, :1], ordered], 1) + r.decoder_pos_embed, norm=False), _("apply decoder_norm before decoder_pred")),
            (decode(torch.cat([x[:, :1], ordered], 1) + r.decoder_pos_embed, keep_cls=True)[:, :L],
             _("drop the CLS token's prediction, x[:, 1:]; you dropped the last patch's")),
            (decode(torch.cat([x[:, :1] + r.decoder_pos_embed[:, :1],
                               torch.gather(shuffled + r.decoder_pos_embed[:, 1:], 1, index)], 1)),
             _("add decoder_pos_embed AFTER the unshuffle: position i belongs to patch i of the image, and before the "
               "gather the tokens are still in shuffled order")),
            (decode(torch.cat([x[:, :1], torch.gather(torch.cat([x[:, 1:], torch.zeros_like(masks)], 1), 1, index)], 1)
                    + r.decoder_pos_embed),
             _("the mask tokens are zeros: use the learned self.mask_token, expanded to (B, L - L_visible, D_dec)")),
            (r.decoder_pred(r.decoder_norm(_blocks(r.decoder_blocks, ordered + r.decoder_pos_embed[:, 1:]))),
             _("keep the CLS token in the decoder (the blocks attend to it): put x[:, :1] back in front of the unshuffled tokens, "
               "add decoder_pos_embed, and drop it only after decoder_pred")),
        ]  # fmt: skip
    axes = ("image", "patch", "pixel value")
    _compare(_("forward_decoder output"), got, want, axes, mistakes)
    _same_on_other_path(
        _("forward_decoder output"),
        yours,
        lambda: _call("forward_decoder", yours.forward_decoder, latent, ids_restore),
        want,
        axes,
    )


def _blocks(blocks, x):
    for block in blocks:
        x = block(x)
    return x


@learner_facing
def check_decoder(MAE: type, *, earlier_checks: dict | None = None) -> None:
    summary = _(
        "forward_decoder: mask tokens appended, unshuffled with ids_restore, one prediction per patch"
    )
    _square_then_rectangular(_check_decoder_on, MAE, 50, summary, earlier_checks)


def _loss_mistakes(pred, target, mask, C, p):
    """(loss, hint) for the classic mistakes of the masked mean squared error, against `target`."""
    per_patch = ((pred - target) ** 2).mean(-1)
    masked = per_patch * mask
    n = p * p * C
    return [
        (per_patch.mean(), _("the loss averages over every patch, the visible ones too: only the MASKED patches (mask == 1) count")),
        ((per_patch * (1 - mask)).sum() / (1 - mask).sum(), _("that is the loss on the visible patches; use mask == 1 (removed)")),
        (masked.sum() / mask.sum() * n,
         _("the error of each patch is summed over its p*p*C = {n} values, where the loss takes their mean").format(n=n)),
        (masked.mean(), _("divide by the number of masked patches, mask.sum(), not by the number of all patches")),
        (masked.sum(), _("divide the summed loss by the number of masked patches, mask.sum()")),
        (((pred - target).abs().mean(-1) * mask).sum() / mask.sum(), _("use the squared error (pred - target) ** 2, not the absolute error")),
    ]  # fmt: skip


def _check_mae_on(MAE, config, seed, parts=None):
    p, C = config["patch_size"], config["in_chans"]
    imgs = _images(config)
    B = imgs.shape[0]
    h, w = imgs.shape[2] // p, imgs.shape[3] // p
    L = h * w
    noise = _noise(2, L)
    reference, yours = _models(MAE, config, seed, norm_pix_loss=False)
    if parts:
        _earlier_steps(yours, parts, blocks=("blocks", "decoder_blocks"))
    with torch.no_grad():
        want = reference.patchify(imgs)
        got = _call("patchify(imgs)", yours.patchify, imgs)
        grid = imgs.reshape(B, C, h, p, w, p)
        mistakes = [
            (grid.permute(0, 2, 4, 1, 3, 5).reshape(B, L, -1),
             _("inside a patch the pixels must be ordered (p, q, c), channel last: 'nchpwq -> nhwpqc'")),
            (grid.permute(0, 4, 2, 3, 5, 1).reshape(B, L, -1), _("patches must go row by row (h before w): 'nchpwq -> nhwpqc'")),
            (grid.permute(0, 2, 4, 5, 3, 1).reshape(B, L, -1), _("inside a patch the row p comes before the column q: 'nhwpqc'")),
            (imgs.reshape(B, L, -1), _("cut the image into p x p patches: reshape to (B, C, h, p, w, p) and reorder 'nchpwq -> nhwpqc'; a plain reshape mixes rows of different patches")),
        ]  # fmt: skip
        _compare("patchify", got, want, ("image", "patch", "pixel value"), mistakes)
        back = _call("unpatchify(patchify(imgs))", yours.unpatchify, want)
        _compare("unpatchify(patchify(imgs))", back, imgs, ("image", "channel", "row", "column"), [
            (want.reshape(imgs.shape), _("unpatchify must undo patchify exactly: reshape to (B, h, w, p, p, C) and reorder 'nhwpqc -> nchpwq'")),
            (torch.einsum("nhwqpc->nchpwq", want.reshape(B, h, w, p, p, C)).reshape(imgs.shape),
             _("unpatchify exchanges the row p and the column q inside each patch: reshape to (B, h, w, p, p, C) and "
               "reorder 'nhwpqc -> nchpwq', p (the row) before q")),
            (F.fold(want.transpose(1, 2), imgs.shape[2:], p, stride=p),
             _("F.fold reads each patch as (c, p, q), channel first, but patchify lays it out (p, q, c): reshape to "
               "(B, h, w, p, p, C) and reorder 'nhwpqc -> nchpwq' (or permute each patch to (c, p, q) before F.fold)")),
        ])  # fmt: skip

        # The first row of patches is nearly flat (variance ~1e-6), where the place of the eps matters.
        imgs = imgs.clone()
        imgs[:, :, :p] = 0.3 + 1e-3 * imgs[:, :, :p]
        pred = _inputs(2, L, p * p * C, seed=3)
        mask = ref.random_masking(torch.zeros(2, L, 1), 0.75, noise=noise)[1]
        target = reference.patchify(imgs)
        mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        normed = (target - mean) / (var + 1e-6) ** 0.5

        def masked_mse(target):
            return (((pred - target) ** 2).mean(-1) * mask).sum() / mask.sum()

        want = reference.forward_loss(imgs, pred, mask)
        got = _call("forward_loss(imgs, pred, mask)", yours.forward_loss, imgs, pred, mask)
        mistakes = [
            (masked_mse(normed), _("forward_loss normalises the targets although norm_pix_loss=False; normalise only if self.norm_pix_loss")),
        ] + _loss_mistakes(pred, target, mask, C, p)  # fmt: skip
        _compare("forward_loss (norm_pix_loss=False)", _tensor("loss", got).reshape(()), want, (), mistakes)
        out = _call(
            "forward(imgs, 0.75, noise=noise)", yours.forward, imgs, 0.75, noise=noise, known=_expand_cls()
        )
        if not isinstance(out, tuple) or len(out) != 3:
            raise AssertionError(_("forward must return (loss, pred, mask)"))
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
            (masked_mse(target), _("with norm_pix_loss=True, normalise each target patch by its own mean and variance")),
            (masked_mse((target - mean) / (target.var(-1, keepdim=True, unbiased=False) + 1e-6) ** 0.5),
             _("use the unbiased variance, target.var(dim=-1) (torch's default), as the official code")),
            (masked_mse((target - mean) / (var**0.5 + 1e-6)), _("the 1e-6 goes inside the square root: (var + 1e-6) ** 0.5")),
            (masked_mse((target - mean) / (var + 1e-6)), _("divide by the standard deviation, (var + 1e-6) ** 0.5, not by the variance")),
            (masked_mse((target - target.mean()) / (target.var() + 1e-6) ** 0.5),
             _("normalise each patch by its OWN mean and variance: .mean(dim=-1, keepdim=True), .var(dim=-1, keepdim=True)")),
        ] + _loss_mistakes(pred, normed, mask, C, p)  # fmt: skip
        _compare("forward_loss (norm_pix_loss=True)", _tensor("loss", got).reshape(()), want, (), mistakes)
        want_loss = reference(imgs, 0.75, noise=noise)[0]
        got = _call("forward(imgs, 0.75, noise=noise)", yours.forward, imgs, 0.75, noise=noise)
        _compare("forward: loss (norm_pix_loss=True)", _tensor("loss", got[0]).reshape(()), want_loss, ())
        nothing = _tensor(
            "loss", _call("forward_loss(imgs, pred, mask=0)", yours.forward_loss, imgs, pred, mask * 0)
        )
        if not torch.isfinite(nothing).all() or nothing.abs().max() > 1e-7:
            raise AssertionError(
                _("forward_loss with nothing masked (mask ratio 0, every mask value 0) gave {value}; with nothing "
                  "masked there is nothing to predict: the loss must be 0, not 0/0 = NaN: divide by "
                  "mask.sum().clamp(min=1)").format(value=nothing.reshape(-1)[0].item())
            )  # fmt: skip


@learner_facing
def check_mae(MAE: type, *, earlier_checks: dict | None = None) -> None:
    summary = _(
        "MAE: patchify 'nhwpqc' and its inverse, loss on masked patches only (norm_pix_loss off and on), forward"
    )
    _square_then_rectangular(_check_mae_on, MAE, 60, summary, earlier_checks)
