"""check_attention (mae.checks, step 04), beyond the mistake suite of test_checks_suite.py: the fused and the
explicit path, a cause named only where the code can have it, attention_weights checked when there.
"""

import re

import pytest
import torch.nn.functional as F
from helpers import learners_stub
from learner_code import (
    AttentionExplicitPathBroken,
    AttentionOwnSDPA,
    AttentionRaises,
    AttentionScaledTwice,
    messages_of_two_seeds,
)
from torch import nn

import mae.models as ref
from mae import checks


def test_messages_are_the_same_from_run_to_run():
    messages = messages_of_two_seeds(checks.check_attention, AttentionExplicitPathBroken)
    assert messages[0] == messages[1]


def test_a_forward_that_raises_gets_no_path_label():
    """Only a forward that runs is tried on the other path; its message names no path."""
    with learners_stub("attention") as exercises:  # the learner's Attention, not written yet
        for mistaken in (AttentionRaises, exercises.Attention):
            with pytest.raises(AssertionError) as error:
                checks.check_attention(mistaken)
            message = str(error.value)
            assert message.startswith(("Attention.forward raised", "Attention.forward reached"))
            assert not re.search(r"(fused|explicit) path(,| \()", message.splitlines()[0].split(": ")[0])


def test_attention_weights_are_checked_when_there(capsys):
    checks.check_attention(ref.Attention)
    assert capsys.readouterr().out.strip().endswith("(fused and explicit paths); attention_weights too")
    checks.check_attention(AttentionOwnSDPA)  # its own class, no attention_weights: forward alone
    assert "attention_weights" not in capsys.readouterr().out


class AttentionExplicitByHeadDim(nn.Module):
    """The learner's own class: no fused kernel anywhere, the scores divided by head_dim instead of its root."""

    def __init__(self, dim, num_heads=8):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.qkv, self.proj = nn.Linear(dim, dim * 3), nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        weights = ((q @ k.transpose(-2, -1)) / self.head_dim).softmax(dim=-1)
        return self.proj((weights @ v).transpose(1, 2).reshape(B, N, C))


def test_a_cause_is_named_only_where_the_code_can_have_it():
    """Scores divided by head_dim: code without F.scaled_dot_product_attention is told the symptom, not that the
    fused kernel scaled them a second time; code that calls it is told that too."""
    with pytest.raises(AssertionError) as error:
        checks.check_attention(AttentionExplicitByHeadDim)
    assert "the scores are scaled by 1 / head_dim; attention divides them by sqrt(head_dim)" in str(
        error.value
    )
    assert "scaled_dot_product_attention" not in str(error.value)
    with pytest.raises(
        AssertionError, match=r"F\.scaled_dot_product_attention already scales .* scaled twice"
    ):
        checks.check_attention(AttentionScaledTwice)


class AttentionFusedOnly(ref.Attention):
    """Right, with the fused kernel whatever fused_attn says: one path."""

    def forward(self, x):
        B, N, C = x.shape
        q, k, v = self._split_heads(x)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, N, C))


def test_the_tick_says_fused_and_explicit_paths_only_for_code_that_has_both(capsys):
    checks.check_attention(AttentionFusedOnly)
    assert "fused and explicit" not in capsys.readouterr().out
    checks.check_attention(ref.Attention)
    assert "(fused and explicit paths)" in capsys.readouterr().out
