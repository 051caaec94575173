"""The shifted-digits study (mae.shifted_digits, mae.evaluation; notebook 11): fine-tuning that learns and
repeats itself, and the shipped model reproducing the numbers of checkpoints/README.md.
"""

import re

import pytest
import torch
from helpers import ROOT

import mae
from mae import shifted_digits as study
from mae.evaluation import finetune_accuracy


def test_finetune_accuracy_learns_and_repeats_itself():
    """A task a one-block classifier learns in 40 steps: the class is which of 4 quadrants is lit."""

    def batch(generator, size=32):
        labels = torch.randint(0, 4, (size,), generator=generator)
        images = torch.rand(size, 1, 16, 16, generator=generator) * 0.5 - 1
        for image, label in zip(images, labels.tolist(), strict=True):
            image[:, 8 * (label // 2) : 8 * (label // 2) + 8, 8 * (label % 2) : 8 * (label % 2) + 8] += 1
        return images, labels

    val, val_labels = batch(torch.Generator().manual_seed(99), size=100)

    def run():
        torch.manual_seed(0)
        model = mae.create_classifier("vit_mini_patch4", num_classes=4, in_chans=1, img_size=16, depth=1)
        return finetune_accuracy(model, batch, val, val_labels, steps=40, lr=1e-3)

    accuracy = run()
    assert accuracy > 0.9, "40 steps should learn which quadrant is lit"
    assert accuracy == run()


SHIPPED = ROOT / "checkpoints" / "mae_mini_shifted_digits.pth"
README = SHIPPED.parent / "README.md"


def _readme_row(label):
    """The numbers of one row of the shifted-digits table in checkpoints/README.md, as fractions."""
    row = next(line for line in README.read_text().splitlines() if line.startswith(f"| {label}"))
    return [float(n) / 100 for n in re.findall(r"(\d+\.\d)%?", row)]


@pytest.mark.integration
def test_the_shipped_model_reproduces_the_frozen_numbers_of_the_readme():
    runs = [study.frozen(SHIPPED, seed) for seed in (0, 1, 2)]
    for name, label in zip(study.FEATURES, ("MAE-pretrained", "the same encoder", "raw pixels"), strict=True):
        knn, probe = (torch.tensor(v, dtype=torch.float64) for v in zip(*[run[name] for run in runs]))
        measured = [knn.mean().item(), knn.std().item(), probe.mean().item(), probe.std().item()]
        stated = _readme_row(label)[:4]  # rounded to 0.1%
        assert measured == pytest.approx(stated, abs=0.0006), name


@pytest.mark.integration
def test_the_shipped_model_reproduces_the_fine_tuning_of_seed_0():
    for pretrained, label in ((True, "MAE-pretrained"), (False, "the same encoder")):
        stated_seed_0 = _readme_row(label)[6]  # after the 4 frozen numbers and the fine-tuned mean and spread
        assert study.finetune(SHIPPED, 0, pretrained) == pytest.approx(stated_seed_0, abs=0.0006), label
