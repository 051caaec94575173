"""The pretraining job (mae.pretrain): its batches (uint8 to the device, normalised
there), unreadable files in the data, and the epoch's reconstruction figure, which never stops training.
Its optimizer groups: test_official_optimizers.py.
"""

import pytest
import torch
from helpers import LAST, flags, image_folder, pretrain_here, records, steps

import mae
from mae import pretrain
from mae.checkpoint import read_checkpoint


@pytest.mark.parametrize("data, channels", [("builtin", 3), ("builtin:digits", 1)])
def test_pretraining_batches_travel_as_uint8_and_are_normalised_bit_for_bit(data, channels):
    """Workers send uint8 (a quarter of float32's bytes); scaled and normalised on the training device, the images
    are exactly what ToDtype(scale=True) and Normalize in the workers gave before."""
    from torchvision.transforms import v2

    from mae.data.images import channel_stats
    from mae.data.pretraining import build_pretrain_dataset, collate_skipping_unreadable

    dataset = build_pretrain_dataset(data, 32, 16, in_chans=channels, seed=1)
    batch = collate_skipping_unreadable([dataset[i] for i in range(6)])
    assert batch[0].dtype == torch.uint8 and batch[0].shape == (6, channels, 32, 32)
    images, noise = pretrain.batch_to_device(batch, torch.device("cpu"))
    in_workers = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(*channel_stats(channels))])
    assert images.dtype == torch.float32 and torch.equal(
        images, torch.stack([in_workers(x) for x in batch[0]])
    )
    assert torch.equal(noise, batch[1])


@pytest.mark.integration
def test_unreadable_files_first_in_the_folder_neither_stop_nor_loop(tmp_path):
    data = image_folder(tmp_path / "data", good=6, bad=6)
    out = tmp_path / "run"
    # batch 1: each unreadable file is a micro-batch without an image, and accum_iter 2 mixes them with good ones
    argv = flags(out, "--batch_size", "1", "--accum_iter", "2", "--epochs", "2", data=data)
    with pytest.warns(UserWarning, match="skipping unreadable image"):
        pretrain_here(argv)
    assert steps(out) == list(range(1, 13))  # 12 files, 6 steps an epoch, none dropped
    epochs = records(out, "epoch")
    assert [(e["epoch"], e["skipped_images"]) for e in epochs] == [(0, 6), (1, 12)]
    assert read_checkpoint(out / LAST)["epoch"] == 2
    events = b"".join(p.read_bytes() for p in out.glob("events.out.tfevents.*"))
    assert events.count(b"reconstruction") == 2  # the figure, from the first readable files

    nothing = image_folder(tmp_path / "unreadable", good=0, bad=4)
    with pytest.raises(ValueError, match=r"no readable image in --data_path .*unreadable: all 4 failed"):
        with pytest.warns(UserWarning):
            pretrain_here(flags(tmp_path / "never", "--batch_size", "2", data=nothing))


def test_a_figure_that_fails_is_a_warning_not_a_stop(tmp_path):
    """The epoch's reconstruction figure is a by-product: an error while drawing it is a warning, and no figure."""
    from mae.data.pretraining import build_pretrain_dataset, collate_skipping_unreadable

    data = image_folder(tmp_path / "data", good=6)
    dataset = build_pretrain_dataset(str(data), 32, 16, seed=0)
    model = mae.mae_vit_tiny_patch8(img_size=32)

    def broken_figure(*args, **kwargs):
        raise RuntimeError("a figure bug")

    with pytest.warns(
        UserWarning, match="no reconstruction figure for epoch 0 .*a figure bug.*training goes on"
    ):
        figure = pretrain.epoch_figure(
            model, dataset, 0, collate_skipping_unreadable, pretrain.batch_to_device, draw=broken_figure
        )
    assert figure is None


def test_a_mask_ratio_that_leaves_no_patch_visible_is_refused_before_training(tmp_path):
    with pytest.raises(
        ValueError, match=r"--mask_ratio 0.999 keeps int\(16 x \(1 - 0.999\)\) = 0 of the 16 patches"
    ):
        pretrain_here(flags(tmp_path / "run", "--mask_ratio", "0.999"))
    assert not (tmp_path / "run" / LAST).exists()
    pretrain_here(
        flags(tmp_path / "ok", "--mask_ratio", "0.9", "--max_steps", "1")
    )  # int(16 x 0.1) = 1 patch seen
    assert steps(tmp_path / "ok") == [1]
