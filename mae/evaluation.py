"""Evaluating encoders: the linear-probe head and its optimiser, features of a whole dataset, k-NN accuracy, a probe
on stored features, and a quick fine-tuning on tensors.

The notebooks compare encoders (pretrained, random, raw pixels) with these; the `mae.linprobe` job trains the same
head (`probe_head`, LARS) end to end with augmentation on real datasets. Library code: no job imports here.
"""

import torch
import torch.nn.functional as F
from timm.optim import Lars
from torch import nn

from .engine import autocast
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


def lars(head, lr, weight_decay):
    """timm's LARS with MAE's grouping: matrices get the trust ratio (and weight decay), biases plain momentum."""
    matrices = [p for p in head.parameters() if p.ndim > 1]
    vectors = [p for p in head.parameters() if p.ndim <= 1]
    return Lars([{"params": matrices, "weight_decay": weight_decay, "always_adapt": True},
                 {"params": vectors, "weight_decay": 0.0, "always_adapt": False}], lr=lr, momentum=0.9)  # fmt: skip


@torch.no_grad()
def extract_features(model, images, batch_size=256):
    """(N, C, H, W) images -> (N, D) features from model.forward_features (eval mode)."""
    with evaluating(model):
        return torch.cat(
            [model.forward_features(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
        )


@torch.no_grad()
def knn_accuracy(train_features, train_labels, test_features, test_labels, k=20, temperature=0.07):
    """Weighted k-NN on cosine similarity (each neighbour votes exp(similarity / T)), as in DINO; returns a fraction."""
    train, test = F.normalize(train_features.float(), dim=1), F.normalize(test_features.float(), dim=1)
    similarity, neighbours = (test @ train.T).topk(k, dim=1)  # (N_test, k)
    votes = torch.zeros(len(test), int(train_labels.max()) + 1, device=test.device)
    votes.scatter_add_(1, train_labels[neighbours], (similarity / temperature).exp())
    return (votes.argmax(1) == test_labels).float().mean().item()


def probe_accuracy(
    train_features, train_labels, test_features, test_labels, epochs=100, lr=1.0, batch_size=256, seed=0
):
    """Train MAE's probe head (BatchNorm without affine, Linear; LARS, cosine schedule) on stored features; test accuracy."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = probe_head(train_features.shape[1], int(train_labels.max()) + 1)
    optimizer = lars(head, lr, weight_decay=0.0)
    steps = epochs * -(-len(train_features) // batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    for _ in range(epochs):
        order = torch.randperm(len(train_features), generator=generator)
        for i in range(0, len(order), batch_size):
            batch = order[i : i + batch_size]
            if len(batch) < 2:  # BatchNorm cannot train on one sample
                continue
            loss = F.cross_entropy(head(train_features[batch]), train_labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    head.eval()
    with torch.no_grad():
        return (head(test_features).argmax(1) == test_labels).float().mean().item()


def finetune_accuracy(
    model, make_batch, val_images, val_labels, steps=200, lr=5e-4, weight_decay=0.05, seed=0
):
    """Fine-tune every weight of a classifier on batches from make_batch(generator) -> (images, labels); its accuracy.

    AdamW with a cosine schedule, no warm-up: a small in-memory stand-in for `mae.finetune`, so that starting
    points (pretrained or not) can be compared in seconds on the same batches.
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
    model.eval()
    with torch.no_grad():
        predictions = torch.cat(
            [model(val_images[i : i + 256]).argmax(1) for i in range(0, len(val_images), 256)]
        )
    return (predictions == val_labels).float().mean().item()
