"""The reference masking and patchify/unpatchify (mae.models): properties that hold for any shape
(hypothesis).
"""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mae import MAE, random_masking

settings.register_profile("ci", max_examples=60, deadline=None)
settings.load_profile("ci")


@given(
    batch=st.integers(1, 4),
    length=st.integers(1, 50),
    ratio=st.floats(0.0, 0.99, allow_nan=False),
    seed=st.integers(0, 2**31 - 1),
)
def test_random_masking_properties(batch, length, ratio, seed):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, length, 3, generator=generator)
    noise = torch.rand(batch, length, generator=generator)
    visible, mask, ids_restore = random_masking(x, ratio, noise=noise)
    len_keep = int(length * (1 - ratio))
    assert visible.shape == (batch, len_keep, 3)
    assert mask.shape == (batch, length) and set(mask.unique().tolist()) <= {0.0, 1.0}
    assert (mask == 0).sum(1).tolist() == [len_keep] * batch
    # ids_restore inverts the shuffle: it is a permutation, and undoes the sort of the noise.
    ids_shuffle = torch.argsort(noise, dim=1)
    assert torch.equal(torch.gather(ids_shuffle, 1, ids_restore), torch.arange(length).expand(batch, -1))
    # The mask agrees with the gathered tokens: visible tokens are exactly those with mask 0.
    for b in range(batch):
        kept = x[b][mask[b] == 0]
        assert torch.equal(visible[b][torch.argsort(ids_shuffle[b, :len_keep])], kept)
        # The kept patches are those with the smallest noise.
        if 0 < len_keep < length:
            assert noise[b][mask[b] == 0].max() <= noise[b][mask[b] == 1].min()


@settings(max_examples=40, deadline=None)
@given(
    in_chans=st.integers(1, 4),
    patch=st.integers(1, 6),
    grid_h=st.integers(1, 4),
    grid_w=st.integers(1, 4),
    batch=st.integers(1, 2),
)
def test_patchify_round_trip(in_chans, patch, grid_h, grid_w, batch):
    model = MAE(img_size=(grid_h * patch, grid_w * patch), patch_size=patch, in_chans=in_chans,
                embed_dim=8, depth=0, num_heads=2, decoder_embed_dim=8, decoder_depth=0, decoder_num_heads=2)  # fmt: skip
    imgs = torch.randn(batch, in_chans, grid_h * patch, grid_w * patch)
    patches = model.patchify(imgs)
    assert patches.shape == (batch, grid_h * grid_w, patch * patch * in_chans)
    assert torch.equal(model.unpatchify(patches), imgs)
    # Patch (r, c) holds pixel (r*p + i, c*p + j, channel k) at position (i*p + j)*C + k: order nhwpqc.
    r, c, i, j, k = grid_h - 1, grid_w - 1, patch - 1, 0, in_chans - 1
    assert (
        patches[0, r * grid_w + c, (i * patch + j) * in_chans + k] == imgs[0, k, r * patch + i, c * patch + j]
    )
