"""The shifted-digits study of notebook 11: does MAE pretraining help where raw pixels are a poor representation?

scikit-learn's digits, each scaled 1.5-2.5x and placed at a random spot of a 32x32 canvas (mae.data.digits.
shifted_digits). Two questions, each answered for one seed (placements, labelled subset, probe and fine-tuning
order) at a time, so that notebook 11, `make checkpoints` and the tests compute the same numbers:

- `frozen`: k-NN and linear-probe accuracy of frozen features: the MAE encoder, the same encoder at random
  initialisation, and the raw pixels, trained on all 1,437 training digits;
- `finetune`: every weight trained on a few labelled digits, from the MAE encoder or from scratch.

And the robustness lesson of notebook 13: `classifier` fine-tunes on all training digits, from the MAE encoder and
from scratch (the two shipped classifiers, checkpoints/shifted_digits_*.pth, made so by scripts/make_checkpoints.py);
`corruption_study` measures both on the validation digits under ImageNet-C's corruptions.
"""

import torch

from . import corruptions
from .benchmarks import CORRUPTIONS, SEVERITIES
from .checkpoint import load_classifier, load_pretrained_encoder
from .data.digits import digit_tensors, place_digits, shifted_batch, shifted_digits
from .data.images import normalize
from .evaluation import extract_features, finetune_accuracy, finetune_in_memory, knn_accuracy, probe_accuracy
from .i18n import N_
from .models import create_classifier

ARCHITECTURE = "vit_mini_patch4"  # the encoder of checkpoints/mae_mini_shifted_digits.pth: 64 patches of 4x4
# The names are keys of the results and rows and columns of the figure, which shows them in the learner's language.
FEATURES = (N_("MAE-pretrained"), N_("random init"), N_("raw pixels"))
STARTS = (N_("from the MAE encoder"), N_("from scratch (random init)"))
PIXELS_FEW_LABELS = N_("raw pixels, k-NN (same 100 digits)")  # the pixels' row beside the fine-tuned ones
FEW_LABELS = N_("fine-tuned, 100 labels (pixels: k-NN)")
FROZEN_LABELS = (N_("k-NN, 1,437 labels"), N_("linear probe, 1,437 labels"))


def encoder(checkpoint, pretrained, num_classes=0, seed=0):
    """The classifier on top of the MAE encoder (mean of the patch tokens), from `checkpoint` or at random init."""
    torch.manual_seed(seed)
    model = create_classifier(ARCHITECTURE, num_classes=num_classes, global_pool=True, in_chans=1)
    if pretrained:
        load_pretrained_encoder(model, checkpoint)
    return model


def splits(seed):
    """All training and validation digits at the sizes and places this seed gives them."""
    return shifted_digits("train", seed=1000 + seed), shifted_digits("val", seed=2000 + seed)


def frozen(checkpoint, seed, k=20):
    """{features: (k-NN accuracy, linear-probe accuracy)} on the validation digits, for one seed."""
    (train_x, train_y), (val_x, val_y) = splits(seed)
    features = {"raw pixels": (train_x.flatten(1), val_x.flatten(1))}
    for name, pretrained in (("MAE-pretrained", True), ("random init", False)):
        model = encoder(checkpoint, pretrained, seed=seed)
        features[name] = extract_features(model, train_x), extract_features(model, val_x)
    results = {}
    for name in FEATURES:
        train_f, val_f = features[name]
        knn = knn_accuracy(train_f, train_y, val_f, val_y, k=k)
        results[name] = knn, probe_accuracy(train_f, train_y, val_f, val_y)
    return results


def finetune(checkpoint, seed, pretrained, labels_per_class=10, steps=150, batch_size=64, lr=1e-3):
    """Validation accuracy after fine-tuning every weight on `labels_per_class` labelled digits of each class,
    each placed anew at every step (the same batches for both starting points)."""
    few_x, few_y = digit_tensors("train", per_class=labels_per_class, seed=seed)  # (10 * per_class, 1, 8, 8)
    _, (val_x, val_y) = splits(seed)
    model = encoder(checkpoint, pretrained, num_classes=10, seed=seed)
    batches = lambda generator: shifted_batch(few_x, few_y, batch_size, generator)  # noqa: E731
    return finetune_accuracy(model, batches, val_x, val_y, steps=steps, lr=lr, seed=seed)


def pixels_knn_few_labels(seed, labels_per_class=10, k=20):
    """k-NN on raw pixels with only the fine-tuning's labelled digits (each placed once): the same labels."""
    few_x, few_y = digit_tensors("train", per_class=labels_per_class, seed=seed)
    _, (val_x, val_y) = splits(seed)
    placed = place_digits(few_x, torch.Generator().manual_seed(seed))
    return knn_accuracy(placed.flatten(1), few_y, val_x.flatten(1), val_y, k=k)


def classifier(checkpoint, pretrained, seed=0, steps=600, batch_size=64, lr=1e-3):
    """Every weight fine-tuned on all 1,437 training digits, placed anew at every step (the same batches for both
    starting points): the shipped classifiers of notebook 13 (600 steps: about 27 passes over the digits)."""
    digits, labels = digit_tensors("train")  # (1437, 1, 8, 8)
    model = encoder(checkpoint, pretrained, num_classes=10, seed=seed)
    batches = lambda generator: shifted_batch(digits, labels, batch_size, generator)  # noqa: E731
    return finetune_in_memory(model, batches, steps=steps, lr=lr, seed=seed)


def load_shipped_classifier(path):
    """A classifier written by `scripts/make_checkpoints.py` (checkpoints/shifted_digits_*.pth), in eval mode."""
    model = encoder(None, pretrained=False, num_classes=10)
    load_classifier(model, path)
    return model.eval()


def on_pixels(model):
    """The classifier as a function of images in [0, 1] (the corruptions' range): normalised, then classified."""
    return lambda images: model(normalize(images))


def corruption_study(models, seed=0, corruptions_=CORRUPTIONS, severities=SEVERITIES, progress=None):
    """{"clean": {name: error}, "errors": {name: {(corruption, severity): error}}} of `models` = {name: classifier}
    on the 360 validation digits (placed by `seed`), clean and under ImageNet-C's corruptions. Every model sees the
    same corrupted images; the digits are corrupted in [0, 1] and normalised as the models take them."""
    _, (val_x, val_y) = splits(seed)
    images = shifted_digits("val", seed=2000 + seed, normalized=False)[0]  # the same digits, in [0, 1]
    classify = {name: on_pixels(model) for name, model in models.items()}
    clean = {name: corruptions.error_rate(function, images, val_y) for name, function in classify.items()}
    errors = corruptions.corruption_errors(classify, images, val_y, corruptions_, severities, seed, progress)
    return {"clean": clean, "errors": errors}


def mean_and_spread(values):
    """'41.2% ± 3.0%': the mean and the standard deviation over seeds (one seed: its value)."""
    values = torch.tensor(values, dtype=torch.float64)
    if len(values) == 1:
        return f"{values.item():6.1%}"
    return f"{values.mean().item():6.1%} ± {values.std().item():4.1%}"


def accuracy_table(frozen_runs, finetuned):
    """{features: {evaluation: [accuracy per seed]}} for `mae.visualize.show_accuracies`.

    `frozen_runs` are `frozen`'s results, one per seed; `finetuned` maps STARTS and PIXELS_FEW_LABELS to the
    accuracies of `finetune` and `pixels_knn_few_labels`, one per seed. The raw pixels cannot be fine-tuned:
    their 100-label bar is k-NN on the same 100 digits.
    """
    knn, probe = FROZEN_LABELS
    table = {name: {knn: [run[name][0] for run in frozen_runs], probe: [run[name][1] for run in frozen_runs]}
             for name in FEATURES}  # fmt: skip
    for name, start in zip(FEATURES, (*STARTS, PIXELS_FEW_LABELS)):
        if start in finetuned:
            table[name][FEW_LABELS] = list(finetuned[start])
    return table
