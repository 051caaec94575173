"""Linear probing (mae.linprobe): the probe head (BatchNorm without affine, then a Linear) and LARS's group
(the official step and state: test_official_optimizers.py)."""

import torch

from mae import linprobe


def test_linear_probe_head_and_lars_groups():
    head = linprobe.probe_head(8, 3)
    norm, linear = head
    assert isinstance(norm, torch.nn.BatchNorm1d) and not norm.affine and norm.eps == 1e-6
    assert linear.weight.std() < 0.02 and torch.all(linear.bias == 0)
    optimizer = linprobe.lars(head, 0.1, 0.0)
    assert [g["params"] for g in optimizer.param_groups] == [
        [linear.weight, linear.bias]
    ]  # one group, officially
