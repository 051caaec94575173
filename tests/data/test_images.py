"""The bundled photographs and image tensors (mae.data.images): held-out photos never trained on, and batches
that are already model input pass through.
"""

import torch

from mae.data.images import HELD_OUT_PHOTOS, TRAINING_PHOTOS, to_model_input
from mae.data.pretraining import BundledPhotos, build_pretrain_dataset


def test_held_out_photographs_are_never_trained_on():
    assert not set(HELD_OUT_PHOTOS) & set(TRAINING_PHOTOS)
    assert len(BundledPhotos().photos) == len(TRAINING_PHOTOS) >= 19


def test_the_shifted_digits_stay_float_and_pass_through():
    dataset = build_pretrain_dataset("builtin:shifted-digits", 32, 64, in_chans=1)
    image, _ = dataset[0]
    assert image.dtype == torch.float32 and to_model_input(image[None]) is not None
    assert torch.equal(to_model_input(image[None]), image[None])
