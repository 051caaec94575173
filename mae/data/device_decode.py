"""JPEG decoding on the GPU: workers only read bytes and draw the crop; the GPU decodes, crops and resizes.

With --gpu_decode, pretraining's data workers no longer decode images (the CPU bottleneck of
ViT-L at thousands of images per second): each sample is the file's bytes, the crop box and flip
drawn exactly as before from the generator seeded by (seed, epoch, index), and the masking noise.
The training process then decodes the whole batch with `torchvision.io.decode_jpeg(device=...)`
(nvJPEG on GPUs), and crops, resizes (bicubic, antialiased), flips and normalises on the device. (torchvision's
decoders are deprecated since 0.29 in favour of TorchCodec's, whose decode_jpeg(device="cuda") takes a list too:
the switch waits for a GPU to measure it on; the CPU path, mae.data.tensor_crops, already uses TorchCodec.)

Files that the batched JPEG decoder cannot read (other formats, CMYK or damaged JPEGs) are decoded
with PIL on the CPU; a file that PIL cannot read either is skipped and counted, as in the CPU path. On a CPU device everything runs there (what the tests use).
"""

import io
import warnings
from pathlib import Path

import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF
from torchvision.transforms.v2.functional import pil_to_tensor

from .files import to_8_bits
from .images import normalize
from .seeding import SeededSamples
from .tensor_crops import crop_box, sample_generator

JPEG_MAGIC = b"\xff\xd8"


class EncodedMaskedImages(SeededSamples):
    """(file bytes, crop box and flip (5,), masking noise (L,)), fixed by (seed, epoch, index); None if unreadable."""

    def __init__(self, files, num_patches, seed=0, scale=(0.2, 1.0)):
        super().__init__(seed)
        self.files, self.num_patches, self.scale = files, num_patches, scale

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        path = self.files[index]
        try:
            with Image.open(path) as image:  # reads the header only: the size, no pixels
                width, height = image.size
            data = torch.frombuffer(bytearray(Path(path).read_bytes()), dtype=torch.uint8)
        except Exception as error:
            return self.unreadable(index, error)
        generator = sample_generator(self.seed, self.epoch, index)  # the CPU path's numbers (tensor_crops)
        top, left, h, w = crop_box(height, width, generator, self.scale)
        flip = int(torch.rand(1, generator=generator).item() < 0.5)
        noise = torch.rand(self.num_patches, generator=generator)
        return data, torch.tensor([top, left, h, w, flip]), noise


def collate_encoded(batch):
    """(all files' bytes end to end, their lengths, boxes, noise), or None when nothing was readable.

    One flat byte tensor, not a list: a worker hands each tensor to the main process as a shared-memory
    file, and hundreds of small ones per batch exhaust or race the file descriptors.
    """
    batch = [sample for sample in batch if sample is not None]
    if not batch:
        return None
    datas, boxes, noise = zip(*batch)
    lengths = torch.tensor([len(d) for d in datas])
    return torch.cat(datas), lengths, torch.stack(boxes), torch.stack(noise)


def _decode_with_pil(data):
    """Any format PIL reads (BMP, TIFF, GIF, 16-bit PNG, CMYK JPEG, ...) -> (3, H, W) uint8 on the CPU."""
    with Image.open(io.BytesIO(data.numpy().tobytes())) as image:
        return pil_to_tensor(to_8_bits(image).convert("RGB"))


def _decode_all(datas, device):
    """Decode every file: JPEGs in one batched call on `device`; anything that call cannot do (other formats,
    CMYK or damaged JPEGs) with PIL on the CPU; None for what PIL cannot read either."""
    images = [None] * len(datas)
    jpegs = [i for i, d in enumerate(datas) if bytes(d[:2].tolist()) == JPEG_MAGIC]
    if jpegs:
        try:
            decoded = decode_jpeg([datas[i] for i in jpegs], mode=ImageReadMode.RGB, device=device)
            for i, image in zip(jpegs, decoded):
                images[i] = image
        except RuntimeError:  # one bad file fails the batch: decode one by one to find it
            for i in jpegs:
                try:
                    images[i] = decode_jpeg(datas[i], mode=ImageReadMode.RGB, device=device)
                except RuntimeError:
                    pass  # left to PIL below
    for i in range(len(datas)):
        if images[i] is None:
            try:
                images[i] = _decode_with_pil(datas[i]).to(device)
            except Exception as error:
                warnings.warn(f"skipping an undecodable image: {error}", stacklevel=2)
    return images


def decode_batch(batch, input_size, device):
    """A collate_encoded batch -> (images (B, 3, S, S) normalised on `device`, noise on `device`), or None."""
    flat, lengths, boxes, noise = batch
    datas = list(torch.split(flat, lengths.tolist()))
    images = _decode_all(datas, device)
    kept = [i for i, image in enumerate(images) if image is not None]
    if not kept:
        return None
    crops = []
    # One .tolist() for the batch, and only the crop (not the whole photograph) made float.
    for i, (top, left, h, w, flip) in zip(kept, boxes[kept].tolist()):
        crop = images[i][None, :, top : top + h, left : left + w].float()
        crop = TF.resize(crop, [input_size, input_size], InterpolationMode.BICUBIC, antialias=True)
        crops.append(crop.flip(-1) if flip else crop)
    x = torch.cat(crops).div_(255).clamp_(0, 1)  # (B, 3, S, S)
    return normalize(x), noise[kept].to(device, non_blocking=True)
