"""The shifted-digits study (mae.shifted_digits, mae.evaluation; notebook 11): fine-tuning that learns and
repeats itself, and the shipped model reproducing the numbers of checkpoints/README.md.
"""

import re

import pytest
import torch
from helpers import ROOT

import mae
from mae import shifted_digits as study
from mae.evaluation import finetune_accuracy, knn_accuracy


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


def test_the_accuracy_figure_draws_each_mean_with_its_spread():
    """Notebook 11's figure: the table of `accuracy_table`, one bar per (features, evaluation), none invented."""
    import matplotlib

    matplotlib.use("Agg")
    from mae.visualize import show_accuracies

    frozen_runs = [{"MAE-pretrained": (0.9, 0.8), "random init": (0.5, 0.4), "raw pixels": (0.3, 0.2)},
                   {"MAE-pretrained": (0.7, 0.6), "random init": (0.5, 0.4), "raw pixels": (0.3, 0.2)}]  # fmt: skip
    finetuned = {study.STARTS[0]: [0.95, 0.85], study.PIXELS_FEW_LABELS: [0.25, 0.25]}  # no run from scratch
    table = study.accuracy_table(frozen_runs, finetuned)
    assert table["MAE-pretrained"]["k-NN, 1,437 labels"] == [0.9, 0.7]
    assert table["raw pixels"][study.FEW_LABELS] == [0.25, 0.25]
    assert study.FEW_LABELS not in table["random init"], "a start that did not run gets no bar"

    fig = show_accuracies(table, chance=0.1)
    ax = fig.axes[0]
    bars = [patch for patch in ax.patches if patch.get_width() > 0]
    assert len(bars) == 8, "3 features x 2 frozen evaluations + 2 fine-tuned"
    assert sorted(round(bar.get_width(), 6) for bar in bars) == [0.2, 0.25, 0.3, 0.4, 0.5, 0.7, 0.8, 0.9]
    labels = [text.get_text() for text in ax.texts]
    assert "80.0%" in labels and "90.0%" in labels, "every bar carries its mean"
    whiskers = [line for collection in ax.collections for line in collection.get_segments()]
    assert any(abs(abs(seg[1][0] - seg[0][0]) - 2 * torch.tensor([0.9, 0.7]).std().item()) < 1e-6
               for seg in whiskers), "the spread of the seeds is drawn"  # fmt: skip
    assert "chance (10%)" in [t.get_text() for t in ax.get_legend().get_texts()]
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_knn_tells_apart_neighbours_closer_than_float32_can():
    """Cosines of 1 - 2e-8 and 1 - 5e-9 are both 1.0 in float32, where topk would take the first (the wrong class);
    knn_accuracy computes in float64, so its answer does not depend on the CPU's rounding."""
    train = torch.tensor([[1.0, 2e-4], [1.0, 1e-4], [0.0, 1.0]])
    assert (
        knn_accuracy(train, torch.tensor([1, 0, 2]), torch.tensor([[1.0, 0.0]]), torch.tensor([0]), k=1)
        == 1.0
    )


CLASSIFIERS = {
    name: ROOT / "checkpoints" / f"shifted_digits_finetuned_{name}.pth" for name in ("mae", "scratch")
}


def test_the_shipped_classifiers_reproduce_their_accuracy_and_notebook_13s_clean_errors():
    """Notebook 13's two classifiers, as scripts/make_checkpoints.py recorded them (float16 weights)."""
    from mae.checkpoint import read_checkpoint
    from mae.evaluation import accuracy

    _, (val_x, val_y) = study.splits(0)
    found = {}
    for name, path in CLASSIFIERS.items():
        recorded = read_checkpoint(path)
        assert recorded["class_names"] == [str(d) for d in range(10)]  # what python -m mae.robustness maps by
        found[name] = accuracy(study.load_shipped_classifier(path), val_x, val_y)
        assert found[name] == pytest.approx(recorded["val_accuracy"], abs=1 / 360), name
    assert (
        round(1 - found["mae"], 3) == 0.036 and round(1 - found["scratch"], 3) == 0.45
    )  # the notebook's text


@pytest.mark.integration
def test_the_mae_classifier_is_remade_by_its_recipe():
    """mae.shifted_digits.classifier from the shipped MAE (600 steps, about 2 minutes on 2 cores) gives the shipped
    classifier's accuracy (the same torch build and CPU give the same weights)."""
    from mae.checkpoint import read_checkpoint
    from mae.evaluation import accuracy

    _, (val_x, val_y) = study.splits(0)
    model = study.classifier(SHIPPED, pretrained=True, seed=0)
    assert accuracy(model, val_x, val_y) == pytest.approx(read_checkpoint(CLASSIFIERS["mae"])["val_accuracy"])


def test_make_checkpoints_makes_every_file_by_default_and_refuses_an_unknown_name(monkeypatch, capsys):
    """`make checkpoints` runs the script with no names (argparse once tested a default list against choices as one
    value, and the command failed at once)."""
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    import make_checkpoints

    made = []
    monkeypatch.setattr(make_checkpoints, "release", lambda name, *_: made.append(name))
    monkeypatch.setattr(make_checkpoints, "release_classifier", lambda name, *_: made.append(name))
    make_checkpoints.main([])
    assert made == [*make_checkpoints.RUNS, *make_checkpoints.CLASSIFIERS]
    with pytest.raises(SystemExit):
        make_checkpoints.main(["mae_mini_digits", "bogus"])
    assert "unknown checkpoint bogus" in capsys.readouterr().err
