"""Decoding on the training device (mae.data.device_decode, --gpu_decode): the crops of the PIL pipeline up to
resampling, bad files skipped, and a run that trains with it (here on the CPU device).
"""

import pytest
import torch
from helpers import make_jpegs, pretrain_command, run_here
from PIL import Image

import mae
from mae.data import device_decode
from mae.data.images import normalize


@pytest.mark.integration
def test_device_decoding_matches_the_pil_pipeline_and_trains(tmp_path):
    """--gpu_decode (here on the CPU device): same crops as PIL decoding up to resampling, skips bad files, trains."""
    from torchvision.transforms import v2

    from mae.data.device_decode import EncodedMaskedImages, collate_encoded, decode_batch
    from mae.data.pretraining import ImageFiles

    make_jpegs(tmp_path / "data")
    files = ImageFiles(tmp_path / "data").files
    dataset = EncodedMaskedImages(files, num_patches=16, seed=0)
    with pytest.warns(UserWarning, match="skipping unreadable image"):  # the truncated file
        imgs, noise = decode_batch(
            collate_encoded([dataset[i] for i in range(len(files))]), 32, torch.device("cpu")
        )
    assert imgs.shape == (len(files) - 1, 3, 32, 32) and noise.shape == (
        len(files) - 1,
        16,
    )  # broken.jpg skipped

    garbage = torch.frombuffer(bytearray(b"\xff\xd8" + bytes(range(200))), dtype=torch.uint8)
    good, _, _ = dataset[0]
    with pytest.warns(
        UserWarning, match="skipping an undecodable image"
    ):  # fails the batch, then PIL: skipped
        decoded = device_decode._decode_all([good, garbage], torch.device("cpu"))
    assert decoded[0].shape[0] == 3 and decoded[1] is None

    index = next(i for i, f in enumerate(files) if f.name == "1.jpg")
    _, box, _ = dataset[index]
    top, left, h, w, flip = box.tolist()
    by_device, _ = decode_batch(collate_encoded([dataset[index]]), 32, torch.device("cpu"))
    with Image.open(files[index]) as image:
        crop = v2.functional.resized_crop(v2.functional.pil_to_tensor(image.convert("RGB")), top, left, h, w, [32, 32],
                                          interpolation=v2.InterpolationMode.BICUBIC, antialias=True)  # fmt: skip
    reference = normalize((crop.flip(-1) if flip else crop).float().div(255).unsqueeze(0))
    assert (by_device - reference).abs().mean() < 0.05  # two JPEG decoders and resamplers, the same crop

    out = tmp_path / "run"
    run_here(pretrain_command(tmp_path / "data", out, "--gpu_decode", "--max_steps", "2", "--epochs", "1"))
    assert (
        mae.read_checkpoint(out / "checkpoint-last.pth")["step"] == 1
    )  # 13 files / batch 8: one step per epoch
