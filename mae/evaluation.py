"""Evaluating encoders: the linear-probe head and its optimiser, features of a whole dataset, k-NN accuracy, a probe
on stored features, and a quick fine-tuning on tensors.

The notebooks compare encoders (pretrained, random, raw pixels) with these; the `mae.linprobe` job trains the same
head (`probe_head`, LARS) end to end with augmentation on real datasets. Library code: no job imports here.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .engine.precision import autocast
from .models import evaluating


class ProbeHead(nn.Sequential):
    """BatchNorm1d then Linear (state-dict keys 0.* and 1.*, as the official head), computed in float32 even under
    autocast: it is all that trains, so no gradient passes through float16 and --amp fp16 needs no GradScaler."""

    def forward(self, features):
        with autocast(features.device, None):  # None: float32, autocast off
            return super().forward(features.float())


def probe_head(embed_dim, num_classes):
    """BatchNorm1d(affine=False, eps=1e-6) then Linear, its weights drawn with std 0.01."""
    linear = nn.Linear(embed_dim, num_classes)
    nn.init.trunc_normal_(linear.weight, std=0.01)
    nn.init.zeros_(linear.bias)
    return ProbeHead(nn.BatchNorm1d(embed_dim, affine=False, eps=1e-6), linear)


class Lars(torch.optim.Optimizer):
    """LARS as MAE's linear probing uses it (the version of MoCo v3), one group for the whole head. For a tensor
    with more than one dimension the step is g + weight_decay * w, rescaled by the trust ratio
    trust_coefficient * |w| / |step| (1 where either norm is 0); a bias steps by its plain gradient, without
    decay. Then heavy-ball momentum: mu = momentum * mu + step, w -= lr * mu. The state ('mu' per tensor) and the
    single group are the official file's, so an official linear-probing checkpoint resumes here.

    timm's Lars differs: its ratio divides by |g| + weight_decay * |w| (+ eps) instead of |g + weight_decay * w|,
    and it needs two groups to leave biases unadapted."""

    def __init__(self, params, lr=0.0, weight_decay=0.0, momentum=0.9, trust_coefficient=0.001):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum,
                                      trust_coefficient=trust_coefficient))  # fmt: skip

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                update = param.grad
                if param.ndim > 1:  # a weight matrix: decay, then the layer-wise trust ratio
                    update = update.add(param, alpha=group["weight_decay"])
                    param_norm, update_norm = param.norm(), update.norm()
                    ratio = group["trust_coefficient"] * param_norm / update_norm
                    ratio = torch.where((param_norm > 0) & (update_norm > 0), ratio, torch.ones_like(ratio))
                    update = update.mul(ratio)
                state = self.state[param]
                if "mu" not in state:
                    state["mu"] = torch.zeros_like(param)
                state["mu"].mul_(group["momentum"]).add_(update)
                param.add_(state["mu"], alpha=-group["lr"])
        return loss


def lars(head, lr, weight_decay):
    """The probe's optimizer, as the official linear probing builds it: LARS over the head's parameters."""
    return Lars(head.parameters(), lr=lr, weight_decay=weight_decay)


@torch.no_grad()
def in_batches(function, images, batch_size=256):
    """function(images) computed `batch_size` images at a time, without gradients, concatenated."""
    return torch.cat([function(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


def extract_features(model, images, batch_size=256):
    """(N, C, H, W) images -> (N, D) features from model.forward_features (eval mode)."""
    with evaluating(model):
        return in_batches(model.forward_features, images, batch_size)


@torch.no_grad()
def knn_accuracy(train_features, train_labels, test_features, test_labels, k=20, temperature=0.07):
    """Weighted k-NN on cosine similarity (each neighbour votes exp(similarity / T)), as in DINO; returns a fraction.

    In float64 on the CPU: in float32 two neighbours' similarities can differ by less than the matrix product's
    rounding, which depends on the CPU's vector instructions, so the k-th neighbour (and a notebook's figure) would
    change from one machine to another (seen: 44.8% against 44.9% on notebook 11's raw pixels)."""
    train_features, test_features = train_features.cpu().double(), test_features.cpu().double()
    train_labels, test_labels = train_labels.cpu(), test_labels.cpu()
    train, test = F.normalize(train_features, dim=1), F.normalize(test_features, dim=1)
    similarity, neighbours = (test @ train.T).topk(k, dim=1)  # (N_test, k)
    votes = torch.zeros(len(test), int(train_labels.max()) + 1, dtype=torch.float64)
    votes.scatter_add_(1, train_labels[neighbours], (similarity / temperature).exp())
    return (votes.argmax(1) == test_labels).float().mean().item()


def probe_accuracy(train_features, train_labels, test_features, test_labels, weight_decay=1e-3, max_iter=1000):  # fmt: skip
    """A linear probe on stored features, trained to its optimum; its test accuracy (a fraction).

    The head of `probe_head`, fitted on the whole training set at once: each feature standardised with the training
    set's mean and variance (what its BatchNorm does), then the Linear layer trained by L-BFGS on the cross-entropy
    plus weight_decay * |W|^2 / 2. The problem is convex, so the result depends on neither a seed nor a step size.

    Not LARS, as `mae.linprobe` trains the head: LARS moves each weight matrix by a small fraction of its norm per
    step, which suits ~7,000 steps of 16,384 ImageNet images but leaves a head trained for 600 steps on a few thousand
    stored features far from its optimum (on the first shifted-digits checkpoint of notebook 11: 14% after 600
    steps, 35% after 6,000, 41% here), so it would measure the optimiser, not the features.
    """
    # On the CPU in float64 (features may come from a GPU): small, exact enough to reach the optimum.
    train_features, test_features = train_features.cpu().double(), test_features.cpu().double()
    train_labels, test_labels = train_labels.cpu(), test_labels.cpu()
    mean, var = train_features.mean(0), train_features.var(0, unbiased=False)
    standardise = lambda features: (features - mean) / (var + 1e-6).sqrt()  # noqa: E731 (BatchNorm1d, eps 1e-6)
    train_x, test_x = standardise(train_features), standardise(test_features)
    linear = nn.Linear(train_x.shape[1], int(train_labels.max()) + 1, dtype=torch.float64)
    nn.init.zeros_(linear.weight)  # a convex problem: any start reaches the optimum
    nn.init.zeros_(linear.bias)
    optimizer = torch.optim.LBFGS(linear.parameters(), max_iter=max_iter, line_search_fn="strong_wolfe")

    def objective():
        optimizer.zero_grad()
        penalty = weight_decay / 2 * linear.weight.square().sum()
        loss = F.cross_entropy(linear(train_x), train_labels) + penalty
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(objective)
    with torch.no_grad():
        return (linear(test_x).argmax(1) == test_labels).double().mean().item()


def finetune_in_memory(model, make_batch, steps=200, lr=5e-4, weight_decay=0.05, seed=0):
    """Fine-tune every weight of a classifier on batches from make_batch(generator) -> (images, labels).

    AdamW with a cosine schedule, no warm-up: a small in-memory stand-in for `mae.finetune`, so that starting
    points (pretrained or not) can be compared in seconds on the same batches. Returns the model, in eval mode.
    """
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    model.train()
    for _ in range(steps):
        images, labels = make_batch(generator)
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return model.eval()


def accuracy(model, images, labels):
    """The fraction of `images` (normalised, as the model takes them) that `model` classifies right."""
    with evaluating(model):
        predictions = in_batches(lambda batch: model(batch).argmax(1), images)
    return (predictions == labels).float().mean().item()


def finetune_accuracy(
    model, make_batch, val_images, val_labels, steps=200, lr=5e-4, weight_decay=0.05, seed=0
):
    """`finetune_in_memory`, then the validation accuracy (a fraction)."""
    finetune_in_memory(model, make_batch, steps, lr, weight_decay, seed)
    return accuracy(model, val_images, val_labels)
