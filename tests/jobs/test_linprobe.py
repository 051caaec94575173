"""Linear probing (mae.linprobe): the probe head (BatchNorm without affine, then a Linear) and LARS's groups."""

import torch

from mae import linprobe


def test_linear_probe_head_and_lars_groups():
    head = linprobe.probe_head(8, 3)
    norm, linear = head
    assert isinstance(norm, torch.nn.BatchNorm1d) and not norm.affine and norm.eps == 1e-6
    assert linear.weight.std() < 0.02 and torch.all(linear.bias == 0)
    optimizer = linprobe.lars(head, 0.1, 0.0)
    assert [g["always_adapt"] for g in optimizer.param_groups] == [True, False]
    assert optimizer.param_groups[0]["params"][0] is linear.weight
