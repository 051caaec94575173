"""The digits (mae.data.digits): scikit-learn's, split once; shifted digits placed at random but reproducibly,
the same images for every method; their pretraining set a function of (seed, epoch, index).
"""

import numpy as np
import pytest
import torch

from mae.data.digits import (
    Digits,
    digit_tensors,
    place_digits,
    place_on_canvas,
    shifted_batch,
    shifted_digits,
)
from mae.data.pretraining import build_pretrain_dataset


def test_digits_are_scikit_learns():
    from sklearn.datasets import load_digits as sklearn_digits

    from mae.data.digits import load_digits

    images, labels = load_digits()
    reference = sklearn_digits()
    assert np.array_equal(images, reference.images) and np.array_equal(labels, reference.target)
    train, val = Digits("train"), Digits("val")
    assert len(train) == 1437 and len(val) == 360 and sorted(set(val.labels)) == list(range(10))


def test_a_digit_keeps_its_ink_and_lands_inside_the_canvas():
    digit = torch.zeros(1, 8, 8)
    digit[:, 2:6, 3:5] = 1.0
    for seed in range(20):
        placed = place_on_canvas(
            digit, canvas=32, scale=(1.5, 2.5), generator=torch.Generator().manual_seed(seed)
        )
        assert placed.shape == (1, 32, 32) and 0 <= placed.min() and placed.max() <= 1
        rows, cols = placed[0].nonzero(as_tuple=True)
        height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        # the 4x2 block of ink, scaled 1.5-2.5x (bilinear smoothing widens it by up to a pixel or two each side)
        assert 4 * 1.5 <= height <= 4 * 2.5 + 3 and 2 * 1.5 <= width <= 2 * 2.5 + 3


def test_placements_cover_the_canvas_and_follow_the_seed():
    digits, _ = digit_tensors("val")
    first = place_digits(digits[:50], torch.Generator().manual_seed(0))
    assert torch.equal(first, place_digits(digits[:50], torch.Generator().manual_seed(0)))
    assert not torch.equal(first, place_digits(digits[:50], torch.Generator().manual_seed(1)))
    ink = (first > -1).flatten(0, 1).float()  # (50, 32, 32): where any digit has ink
    centre_rows = (ink * torch.arange(32.0)[:, None]).sum((1, 2)) / ink.sum((1, 2))
    assert centre_rows.min() < 12 and centre_rows.max() > 20, "digits should land all over the canvas"


def test_shifted_splits_are_the_digits_splits_placed_once():
    images, labels = shifted_digits("val", seed=3)
    assert images.shape == (360, 1, 32, 32) and images.min() == -1 and labels.tolist() == Digits("val").labels
    again, _ = shifted_digits("val", seed=3)
    assert torch.equal(images, again)
    train, train_labels = shifted_digits("train", seed=3)
    assert len(train) == 1437 and train_labels.tolist() == Digits("train").labels


def test_few_labels_are_balanced_and_drawn_from_the_training_split():
    digits, labels = digit_tensors("train", per_class=10, seed=4)
    assert digits.shape == (100, 1, 8, 8) and torch.bincount(labels).tolist() == [10] * 10
    every, _ = digit_tensors("train")
    assert all((every == d).all((1, 2, 3)).any() for d in digits)
    assert torch.equal(digits, digit_tensors("train", per_class=10, seed=4)[0])
    assert not torch.equal(digits, digit_tensors("train", per_class=10, seed=5)[0])


def test_training_batches_place_every_digit_anew():
    digits, labels = digit_tensors("train", per_class=2, seed=0)
    generator = torch.Generator().manual_seed(0)
    first, first_labels = shifted_batch(digits, labels, 16, generator)
    second, _ = shifted_batch(digits, labels, 16, generator)
    assert first.shape == (16, 1, 32, 32) and first_labels.shape == (16,)
    assert not torch.equal(first, second)


def test_pretraining_data_is_a_function_of_seed_epoch_and_index():
    dataset = build_pretrain_dataset("builtin:shifted-digits", 32, 64, in_chans=1, seed=0)
    image, noise = dataset[5]
    assert image.shape == (1, 32, 32) and noise.shape == (64,) and image.min() == -1
    assert torch.equal(dataset[5][0], image)
    dataset.set_epoch(1)
    assert not torch.equal(dataset[5][0], image), "a new place at every epoch"


def test_a_canvas_too_small_for_the_digit_is_refused():
    with pytest.raises(ValueError, match="does not fit a 16-pixel canvas"):
        place_on_canvas(torch.zeros(1, 8, 8), canvas=16)


@pytest.mark.parametrize("bad", ["builtin:shifted", "builtin:shifted_digits"])
def test_unknown_builtin_names_list_the_choices(bad):
    with pytest.raises(ValueError, match="builtin:shifted-digits"):
        build_pretrain_dataset(bad, 32, 64, in_chans=1)
