"""A few hundred optimiser steps on a handful of images, to watch a model learn inside a notebook.

This is a demonstration on a fixed batch, not pretraining: the real engine, with data
loading, schedules, checkpoints and distributed training, is `python -m mae.pretrain`.
"""

import torch


def fit_batch(model, imgs, steps=150, lr=1.5e-3, mask_ratio=0.75, seed=0, log_every=10):
    """Train `model` on the fixed batch `imgs` with AdamW (betas 0.9, 0.95); returns the loss every `log_every` steps."""
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.05)
    model.train()
    losses = []
    for step in range(steps):
        loss, _, _ = model(imgs, mask_ratio=mask_ratio)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % log_every == 0 or step == steps - 1:
            losses.append((step, loss.item()))
    model.eval()
    return losses
