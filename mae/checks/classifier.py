"""Check 12: the encoder as a classifier (VisionTransformer): global pooling or the CLS token, fc_norm, the head."""

import inspect

import torch

from .. import models as ref
from ..i18n import N_, _
from .harness import _call, _compare, _copy_weights, _inputs, _randomise, _same_on_other_path, learner_facing
from .parts import CLS_NOT_EXPANDED, TINY, _earlier_steps, _images, _square_then_rectangular

TINY_ENCODER_KEYS = [
    k for k in inspect.signature(ref.Encoder).parameters if k in TINY
]  # the classifier's share
EXPAND_CLS_TOKEN = N_("expand the CLS token to the batch before torch.cat: cls_token.expand(B, -1, -1)")


def _check_classifier_on(VisionTransformer, config, seed, parts=None):
    config = {k: v for k, v in config.items() if k in TINY_ENCODER_KEYS}
    imgs = _images(config)
    known = [(CLS_NOT_EXPANDED, _(EXPAND_CLS_TOKEN))]
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
            _earlier_steps(yours, parts, masking=False)
        r = reference
        with torch.no_grad():
            want = reference.forward_features(imgs)
            got = _call("forward_features(imgs)", yours.forward_features, imgs, known=known)

            def tokens(pos=True, r=reference):
                x = r.patch_embed(imgs)
                x = torch.cat([r.cls_token.expand(2, -1, -1), x], dim=1) + (r.pos_embed if pos else 0)
                for block in r.blocks:
                    x = block(x)
                return x

            x = tokens()
            if global_pool:
                mistakes = [
                    (r.fc_norm(x.mean(dim=1)), _("average the PATCH tokens only, x[:, 1:].mean(dim=1): leave the CLS token out")),
                    (x[:, 1:].mean(dim=1), _("normalise the pooled vector with self.fc_norm")),
                    (r.fc_norm(tokens(pos=False)[:, 1:].mean(dim=1)), _("add self.pos_embed (CLS row included) before the blocks")),
                    (r.fc_norm(x[:, 0]), _("global_pool=True averages the patch tokens; the CLS token is for global_pool=False")),
                    (r.fc_norm(x[:, 1:]).mean(dim=1), _("average first, then apply fc_norm: fc_norm(x[:, 1:].mean(dim=1))")),
                ]  # fmt: skip
            else:
                mistakes = [
                    (x[:, 0], _("apply the final LayerNorm self.norm before taking the CLS token")),
                    (r.norm(x)[:, 1:].mean(dim=1), _("global_pool=False reads the CLS token, x[:, 0]")),
                    (r.norm(tokens(pos=False))[:, 0], _("add self.pos_embed (CLS row included) before the blocks")),
                ]  # fmt: skip
            axes = ("image", "channel")
            _compare(f"forward_features (global_pool={global_pool})", got, want, axes, mistakes)
            _compare(f"forward (global_pool={global_pool})", _call("forward(imgs)", yours, imgs, known=known), reference(imgs),
                     ("image", "class"), [(want, _("finish with self.head(features)"))])  # fmt: skip
            _same_on_other_path(
                f"forward_features (global_pool={global_pool})", yours,
                lambda yours=yours: _call("forward_features(imgs)", yours.forward_features, imgs), want, axes,
            )  # fmt: skip


@learner_facing
def check_classifier(VisionTransformer: type, *, earlier_checks: dict | None = None) -> None:
    summary = _(
        "VisionTransformer: every patch seen, CLS token (probe) or pooled patches + fc_norm (fine-tune), then head"
    )
    _square_then_rectangular(_check_classifier_on, VisionTransformer, 70, summary, earlier_checks)
