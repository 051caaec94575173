"""One check per exercise: it takes your object, compares it with the reference, and explains mistakes.

    from mae.checks import check_patch_embed
    check_patch_embed(PatchEmbed)        # prints one line, or raises AssertionError saying what is wrong

Every check copies the reference weights into your module, runs both on fixed, non-trivial
inputs (explicit noise wherever masking is involved) and compares. When the values differ,
it tries the classic mistakes (computed from the reference) and names the one you made;
otherwise it says where the first wrong value is. Any correct implementation passes.

From a terminal, `python -m mae.checks [step ...]` checks your exercises/ like rustlings.
"""

import argparse
import contextlib
import importlib
import io
import sys
import traceback
from pathlib import Path

import torch

import solutions as ref

ATOL = 1e-5


# --------------------------------------------------------------------------- helpers


def _call(what, fn, *args, **kwargs):
    """Run the learner's code; turn an unfinished stub or a crash into an explanation."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError as error:
        frame = traceback.extract_tb(error.__traceback__)[-1]
        where = f"{Path(frame.filename).parent.name}/{Path(frame.filename).name}, in {frame.name}"
        raise AssertionError(f"{what} reached code that is not written yet ({where}): {error}") from None
    except AssertionError:
        raise
    except Exception as error:
        raise AssertionError(f"{what} raised {type(error).__name__}: {error}") from error


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


def _compare(what, got, want, axes, mistakes=(), atol=ATOL):
    """Assert got == want; otherwise name a matching mistake, or locate the first wrong value.

    axes names each dimension ("batch", "patch", "channel", ...); mistakes is a list of
    (what the mistaken output would be, the hint that explains it).
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


def _ok(message):
    print(f"\u2713 {message}")


def _inputs(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _noise(n, length, seed=1):
    return torch.rand(n, length, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- 01 patch embedding


def check_patch_embed(PatchEmbed):
    kwargs = dict(img_size=(16, 24), patch_size=8, in_chans=2, embed_dim=6)  # a 2 x 3 grid of patches
    reference = ref.PatchEmbed(**kwargs)
    yours = _call("PatchEmbed.__init__", PatchEmbed, **kwargs)
    _copy_weights("PatchEmbed", reference, yours)
    imgs = _inputs(2, 2, 16, 24)
    want = reference(imgs)  # (B, L, D)
    got = _call("PatchEmbed.forward", yours, imgs)
    grid = want.reshape(2, 2, 3, 6)
    mistakes = [
        (want.transpose(1, 2), "the embedding dimension must come last: (B, L, D); did you forget .transpose(1, 2)?"),
        (grid.transpose(1, 2).reshape(2, 6, 6),
         "the patches are in column order; patch index must run row by row: index = row * w + col "
         "(flatten (B, D, h, w) with .flatten(2), not after swapping h and w)"),
        (reference.proj(imgs), "the output must be a sequence (B, L, D); flatten the (h, w) grid of patches"),
    ]  # fmt: skip
    _compare("PatchEmbed output", got, want, ("image", "patch", "channel"), mistakes)
    _ok("PatchEmbed: (2, 2, 16, 24) images -> (2, 6, 6) tokens, row by row, as the reference")


# --------------------------------------------------------------------------- 02 position embedding


def _swap_halves(table, dim):
    """Swap the two halves of the last dimension of every `dim`-wide block."""
    blocks = table.reshape(*table.shape[:-1], -1, 2, dim // 2)
    return blocks.flip(-2).reshape(table.shape)


def check_pos_embed(get_2d_sincos_pos_embed):
    dim, grid = 16, 4
    want = ref.get_2d_sincos_pos_embed(dim, grid, cls_token=True)  # (1 + 16, 16)
    got = _tensor(
        "get_2d_sincos_pos_embed(...)",
        _call("get_2d_sincos_pos_embed", get_2d_sincos_pos_embed, dim, grid, cls_token=True),
    )
    no_cls = ref.get_2d_sincos_pos_embed(dim, grid)
    mistakes = [
        (no_cls, "with cls_token=True, prepend one all-zero row for the CLS token"),
        (torch.cat([no_cls[:1], no_cls]), "the CLS row must be all zeros: prepend torch.zeros(1, embed_dim)"),
        (_swap_halves(want, dim), "the row and column halves are swapped: the first half of the channels encodes the column (w), the second the row (h)"),
        (_swap_halves(want, dim // 2), "sin and cos are swapped: each half is [sin(pos * omega), cos(pos * omega)], sines first"),
        (_swap_halves(_swap_halves(want, dim), dim // 2), "both the row/column halves and the sin/cos halves are swapped"),
    ]  # fmt: skip
    axes = ("position (0 = CLS, then row * 4 + col + 1)", "channel")
    _compare("get_2d_sincos_pos_embed(16, 4, cls_token=True)", got, want, axes, mistakes)
    got = _tensor("table", _call("get_2d_sincos_pos_embed", get_2d_sincos_pos_embed, 8, 3))
    _compare("get_2d_sincos_pos_embed(8, 3)", got, ref.get_2d_sincos_pos_embed(8, 3), ("position", "channel"))
    _ok("get_2d_sincos_pos_embed: columns then rows, [sin, cos] in each half, zero CLS row")


# --------------------------------------------------------------------------- 03 random masking


def check_random_masking(random_masking):
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
    ])  # fmt: skip
    _compare("x_visible", got_x, want_x, ("image", "kept token", "channel"), [
        (torch.gather(x, 1, ids_shuffle[:, :4, None].expand(-1, -1, 3)),
         "keep int(L * (1 - mask_ratio)) = int(10 * 0.35) = 3 patches (truncate, don't round)"),
        (kept_largest, "you kept the patches with the largest noise; keep the smallest (ascending argsort)"),
        (torch.gather(x, 1, want_ids[:, :3, None].expand(-1, -1, 3)),
         "gather the visible tokens with ids_shuffle[:, :len_keep], not with ids_restore"),
    ])  # fmt: skip
    _compare("mask", got_mask, want_mask, ("image", "patch"), [
        (1 - want_mask, "the mask must be 1 for REMOVED patches and 0 for kept ones"),
        (shuffled_mask, "the mask is not in the original patch order: did you gather it with ids_restore?"),
    ])  # fmt: skip
    if got_mask.dtype != torch.float32:
        raise AssertionError(f"the mask should be a float tensor (1.0 = removed), got dtype {got_mask.dtype}")

    torch.manual_seed(0)
    _, default_mask, _ = _call("random_masking(x, 0.65)", random_masking, x, ratio)
    torch.manual_seed(0)
    _, rand_mask, _ = ref.random_masking(x, ratio, noise=torch.rand(2, 10))
    if not torch.equal(_tensor("mask", default_mask).float(), rand_mask):
        raise AssertionError(
            "without noise=, draw it as torch.rand(N, L) (the official masking does exactly this)"
        )
    _ok("random_masking: 3 of 10 patches kept, mask in the original order, ids_restore inverts the shuffle")


# --------------------------------------------------------------------------- 04 attention


def _attention_variants(attn, x):
    """Outputs of the classic attention mistakes, computed from the reference module."""
    B, N, C = x.shape
    H, hd = attn.num_heads, attn.head_dim
    q, k, v = attn.qkv(x).reshape(B, N, 3, H, hd).permute(2, 0, 3, 1, 4)
    scores = q @ k.transpose(-2, -1)

    def finish(out):  # (B, H, N, hd) -> (B, N, C)
        return attn.proj(out.transpose(1, 2).reshape(B, N, C))

    return [
        (finish(scores.softmax(-1) @ v), "the attention scores are not scaled: multiply q k^T by head_dim ** -0.5"),
        (finish((scores * C**-0.5).softmax(-1) @ v), "scale by head_dim ** -0.5 (the width of one head), not by dim ** -0.5"),
        (finish((scores * hd**-0.5).softmax(-2) @ v), "the softmax must run over the keys (the last dimension), not the queries"),
        (attn.proj(((scores * hd**-0.5).softmax(-1) @ v).reshape(B, N, C)),
         "heads were merged in the wrong order: transpose (B, H, N, hd) to (B, N, H, hd) before reshaping to (B, N, C)"),
        (((scores * hd**-0.5).softmax(-1) @ v).transpose(1, 2).reshape(B, N, C), "apply the output projection self.proj at the end"),
    ]  # fmt: skip


def check_attention(Attention):
    reference = ref.Attention(12, num_heads=3).eval()
    yours = _call("Attention(12, num_heads=3)", Attention, 12, num_heads=3)
    _copy_weights("Attention", reference, yours)
    yours.eval()
    x = _inputs(2, 5, 12)
    with torch.no_grad():
        want = reference(x)
        got = _call("Attention.forward", yours, x)
        mistakes = _attention_variants(reference, x)
    _compare("Attention output", got, want, ("batch", "token", "channel"), mistakes)
    _ok("Attention: 3 heads of width 4, scaled dot products, softmax over keys, as the reference")


# --------------------------------------------------------------------------- 05 transformer block


def check_block(Block):
    reference = ref.Block(12, num_heads=3, mlp_ratio=2.0).eval()
    yours = _call("Block(12, num_heads=3, mlp_ratio=2.0)", Block, 12, num_heads=3, mlp_ratio=2.0)
    _copy_weights("Block", reference, yours)
    yours.eval()
    eps = {m.eps for m in yours.modules() if isinstance(m, torch.nn.LayerNorm)}
    if eps != {1e-6}:
        raise AssertionError(
            f"the LayerNorms should use eps=layer_norm_eps (1e-6, as MAE), got eps {sorted(eps)}"
        )
    x = _inputs(2, 5, 12) * 3 + 1  # not already normalised, so a missing norm shows
    r = reference
    with torch.no_grad():
        want = reference(x)
        got = _call("Block.forward", yours, x)
        h = r.norm1(x + r.attn(x))
        mistakes = [
            (r.norm2(h + r.mlp(h)), "this is post-norm; MAE's ViT is pre-norm: x + attn(norm1(x)), then x + mlp(norm2(x))"),
            (r.mlp(r.norm2(r.attn(r.norm1(x)))), "the residual connections are missing: add each sub-layer's output to x"),
            (x + r.attn(r.norm1(x)) + r.mlp(r.norm2(x)),
             "the MLP must see the output of the attention step (x after the first residual), not the block's input"),
        ]  # fmt: skip
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            check_attention(type(yours.attn))
    except AssertionError as error:
        raise AssertionError(
            f"your Block's Attention is not right yet; pass check_attention first.\n{error}"
        ) from None
    _compare("Block output", got, want, ("batch", "token", "channel"), mistakes)
    _ok("Block: pre-norm attention and MLP, each with a residual connection")


# --------------------------------------------------------------------------- 06-08 the model

TINY = dict(
    img_size=(16, 24),
    patch_size=4,
    in_chans=2,
    embed_dim=16,
    depth=2,
    num_heads=2,
    decoder_embed_dim=12,
    decoder_depth=1,
    decoder_num_heads=3,
    mlp_ratio=2.0,
)  # fmt: skip  a 4 x 6 grid: rows and columns differ, so order mistakes show


def _models(MAE, **overrides):
    config = {**TINY, **overrides}
    torch.manual_seed(0)
    reference = ref.MAE(**config).eval()
    yours = _call("MAE(...)", MAE, **config)
    _copy_weights("MAE", reference, yours)
    return reference, yours.eval()


def check_encoder(MAE):
    reference, yours = _models(MAE)
    imgs, noise = _inputs(2, 2, 16, 24), _noise(2, 24)
    r = reference
    with torch.no_grad():
        want, want_mask, want_ids = reference.forward_encoder(imgs, 0.75, noise=noise)
        out = _call(
            "forward_encoder(imgs, 0.75, noise=noise)", yours.forward_encoder, imgs, 0.75, noise=noise
        )
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
        mistakes = [
            (encode(all_tokens, r.cls_token + r.pos_embed[:, :1]),
             "the encoder must see only the visible patches (1 CLS + 6 tokens here): apply random_masking before the blocks"),
            (all_tokens[:, :6], "prepend the CLS token and run the transformer blocks on the visible tokens"),
            (encode(visible, r.cls_token + r.pos_embed[:, :1], final_norm=False), "apply the final LayerNorm self.norm"),
            (encode(ref.random_masking(patches, 0.75, noise=noise)[0] + r.pos_embed[:, 1:7], r.cls_token),
             "add the position embeddings BEFORE masking, so that each kept patch keeps its own position"),
        ]  # fmt: skip
    _compare("mask", got_mask, want_mask, ("image", "patch"))
    _compare("ids_restore", got_ids, want_ids, ("image", "patch"))
    _compare("latent", got, want, ("image", "token (0 = CLS)", "channel"), mistakes)
    _ok("forward_encoder: position, then masking, then CLS; 1 + 6 of 24 tokens through the blocks")


def check_decoder(MAE):
    reference, yours = _models(MAE)
    imgs, noise = _inputs(2, 2, 16, 24), _noise(2, 24)
    r = reference
    with torch.no_grad():
        latent, _, ids_restore = reference.forward_encoder(imgs, 0.75, noise=noise)
        want = reference.forward_decoder(latent, ids_restore)
        got = _call("forward_decoder(latent, ids_restore)", yours.forward_decoder, latent, ids_restore)

        def decode(x, keep_cls=False):
            for block in r.decoder_blocks:
                x = block(x)
            x = r.decoder_pred(r.decoder_norm(x))
            return x if keep_cls else x[:, 1:]

        x = r.decoder_embed(latent)
        shuffled = torch.cat([x[:, 1:], r.mask_token.expand(2, 24 - 6, -1)], dim=1)
        ordered = torch.gather(shuffled, 1, ids_restore[..., None].expand(-1, -1, 12))
        mistakes = [
            (decode(torch.cat([x[:, :1], shuffled], 1) + r.decoder_pos_embed),
             "the tokens are still in shuffled order: unshuffle them with torch.gather(..., ids_restore) before adding positions"),
            (decode(torch.cat([x[:, :1], ordered], 1)), "add decoder_pos_embed: the mask tokens need to know where they are"),
            (decode(torch.cat([x[:, :1], ordered], 1) + r.decoder_pos_embed, keep_cls=True),
             "drop the CLS token from the prediction: one prediction per patch, (B, L, p*p*C)"),
        ]  # fmt: skip
    _compare("forward_decoder output", got, want, ("image", "patch", "pixel value"), mistakes)
    _ok("forward_decoder: mask tokens appended, unshuffled with ids_restore, one prediction per patch")


def check_mae(MAE):
    reference, yours = _models(MAE, norm_pix_loss=True)
    imgs, noise = _inputs(2, 2, 16, 24), _noise(2, 24)
    B, C, p, h, w = 2, 2, 4, 4, 6
    with torch.no_grad():
        want = reference.patchify(imgs)
        got = _call("patchify(imgs)", yours.patchify, imgs)
        grid = imgs.reshape(B, C, h, p, w, p)
        mistakes = [
            (grid.permute(0, 2, 4, 1, 3, 5).reshape(B, h * w, -1),
             "inside a patch the pixels must be ordered (p, q, c), channel last: 'nchpwq -> nhwpqc'"),
            (grid.permute(0, 4, 2, 3, 5, 1).reshape(B, h * w, -1), "patches must go row by row (h before w): 'nchpwq -> nhwpqc'"),
            (grid.permute(0, 2, 4, 5, 3, 1).reshape(B, h * w, -1), "inside a patch the row p comes before the column q: 'nhwpqc'"),
        ]  # fmt: skip
        _compare("patchify", got, want, ("image", "patch", "pixel value"), mistakes)
        back = _call("unpatchify(patchify(imgs))", yours.unpatchify, want)
        _compare("unpatchify(patchify(imgs))", back, imgs, ("image", "channel", "row", "column"),
                 [(want.reshape(B, C, 16, 24), "unpatchify must undo patchify exactly: reshape to (B, h, w, p, p, C) and reorder 'nhwpqc -> nchpwq'")])  # fmt: skip

        # The first row of patches is nearly flat (variance ~1e-6), where the place of the eps matters.
        imgs = imgs.clone()
        imgs[:, :, :p] = 0.3 + 1e-3 * imgs[:, :, :p]
        pred = _inputs(2, 24, p * p * C, seed=3)
        _, mask, _ = ref.random_masking(torch.zeros(2, 24, 1), 0.75, noise=noise)
        want = reference.forward_loss(imgs, pred, mask)
        got = _call("forward_loss(imgs, pred, mask)", yours.forward_loss, imgs, pred, mask)
        target = reference.patchify(imgs)
        mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        normed = (target - mean) / (var + 1e-6) ** 0.5
        per_patch = ((pred - normed) ** 2).mean(-1)
        mistakes = [
            (per_patch.mean(), "the loss must average over the MASKED patches only: (loss * mask).sum() / mask.sum()"),
            ((per_patch * (1 - mask)).sum() / (1 - mask).sum(), "that is the loss on the visible patches; use mask == 1 (removed)"),
            ((((pred - target) ** 2).mean(-1) * mask).sum() / mask.sum(), "with norm_pix_loss=True, normalise each target patch by its own mean and variance"),
            ((((pred - (target - mean) / (target.var(-1, keepdim=True, unbiased=False) + 1e-6) ** 0.5) ** 2).mean(-1) * mask).sum() / mask.sum(),
             "use the unbiased variance, target.var(dim=-1) (torch's default), as the official code"),
            ((((pred - (target - mean) / (var**0.5 + 1e-6)) ** 2).mean(-1) * mask).sum() / mask.sum(),
             "the 1e-6 goes inside the square root: (var + 1e-6) ** 0.5"),
        ]  # fmt: skip
        _compare("forward_loss", _tensor("loss", got).reshape(()), want, (), mistakes)

        out = _call("forward(imgs, 0.75, noise=noise)", yours.forward, imgs, 0.75, noise=noise)
        if not isinstance(out, tuple) or len(out) != 3:
            raise AssertionError("forward must return (loss, pred, mask)")
        want_loss, want_pred, want_mask = reference(imgs, 0.75, noise=noise)
        _compare("forward: pred", out[1], want_pred, ("image", "patch", "pixel value"))
        _compare("forward: mask", out[2], want_mask, ("image", "patch"))
        _compare("forward: loss", _tensor("loss", out[0]).reshape(()), want_loss, ())
    _ok("MAE: patchify 'nhwpqc' and its inverse, normalised-pixel loss on masked patches only, forward")


# --------------------------------------------------------------------------- 12 the classifier

ENCODER_KEYS = ("img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads", "mlp_ratio")


def check_classifier(VisionTransformer):
    config = {k: v for k, v in TINY.items() if k in ENCODER_KEYS}
    imgs = _inputs(2, 2, 16, 24)
    for global_pool in (True, False):
        torch.manual_seed(0)
        reference = ref.VisionTransformer(num_classes=5, global_pool=global_pool, **config).eval()
        with torch.no_grad():  # non-trivial head and position embeddings, so that mistakes show
            reference.head.weight.normal_()
            reference.pos_embed.add_(0.5 * _inputs(*reference.pos_embed.shape, seed=4))
        what = f"VisionTransformer(num_classes=5, global_pool={global_pool}, ...)"
        yours = _call(what, VisionTransformer, num_classes=5, global_pool=global_pool, **config)
        _copy_weights(what, reference, yours)
        yours.eval()
        r = reference
        with torch.no_grad():
            want = reference.forward_features(imgs)
            got = _call("forward_features(imgs)", yours.forward_features, imgs)

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
                ]  # fmt: skip
            else:
                mistakes = [
                    (x[:, 0], "apply the final LayerNorm self.norm before taking the CLS token"),
                    (r.norm(x)[:, 1:].mean(dim=1), "global_pool=False reads the CLS token, x[:, 0]"),
                    (r.norm(tokens(pos=False))[:, 0], "add self.pos_embed (CLS row included) before the blocks"),
                ]  # fmt: skip
        _compare(f"forward_features (global_pool={global_pool})", got, want, ("image", "channel"), mistakes)
        _compare(f"forward (global_pool={global_pool})", _call("forward(imgs)", yours, imgs), reference(imgs),
                 ("image", "class"), [(want, "finish with self.head(features)")])  # fmt: skip
    _ok(
        "VisionTransformer: every patch seen, CLS token (probe) or pooled patches + fc_norm (fine-tune), then head"
    )


# --------------------------------------------------------------------------- the terminal runner

STEPS = {  # step -> (exercise file, the check, which object of the implementation it takes)
    "patch_embed": ("01", check_patch_embed, "PatchEmbed"),
    "pos_embed": ("02", check_pos_embed, "get_2d_sincos_pos_embed"),
    "masking": ("03", check_random_masking, "random_masking"),
    "attention": ("04", check_attention, "Attention"),
    "transformer": ("05", check_block, "Block"),
    "encoder": ("06", check_encoder, "MAE"),
    "decoder": ("07", check_decoder, "MAE"),
    "model": ("08", check_mae, "MAE"),
    "classifier": ("12", check_classifier, "VisionTransformer"),
}


def run_checks(steps=None, impl="exercises"):
    """Run the checks of `steps` (all by default) on the package `impl`; returns {step: error or None}."""
    module = importlib.import_module(impl)
    results = {}
    for step in steps or STEPS:
        number, check, name = STEPS[step]
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                check(getattr(module, name))
            results[step] = None
        except AssertionError as error:
            results[step] = str(error)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description="Check your exercises, step by step.")
    parser.add_argument("steps", nargs="*", metavar="step", help=f"any of: {', '.join(STEPS)} (default: all)")
    parser.add_argument("--impl", default="exercises", choices=("exercises", "solutions"))
    args = parser.parse_args(argv)
    unknown = [step for step in args.steps if step not in STEPS]
    if unknown:
        parser.error(f"unknown step(s) {', '.join(unknown)}; choose from {', '.join(STEPS)}")
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    results = run_checks(args.steps or None, args.impl)
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
    print(f"\n{passed} of {len(results)} steps pass ({args.impl}/).")
    failing = [step for step, error in results.items() if error is not None]
    if failing:
        print(f"Next: open exercises/{failing[0]}.py (notebook {STEPS[failing[0]][0]}).")
    return 0 if not failing else 1


if __name__ == "__main__":
    sys.exit(main())
