"""check_attention (mae.checks, step 04): each mistaken Attention caught and named (on the fused and the
explicit path), each correct one passing; attention_weights checked when there.
"""

import re

import pytest
from helpers import learners_stub
from learner_code import (
    CORRECT,
    MISTAKES,
    AttentionExplicitPathBroken,
    AttentionOwnSDPA,
    AttentionRaises,
    messages_of_two_seeds,
    of_step_file,
)

import mae.models as ref
from mae import checks

STEP_MISTAKES = of_step_file(MISTAKES, __file__)
STEP_CORRECT = of_step_file(CORRECT, __file__)


@pytest.mark.parametrize("name", list(STEP_MISTAKES))
def test_mistake_is_caught_and_named(name):
    check, mistaken, pattern = STEP_MISTAKES[name]
    with pytest.raises(AssertionError, match=pattern):
        check(mistaken)


@pytest.mark.parametrize("name", list(STEP_CORRECT))
def test_correct_variant_passes(name, capsys):
    check, correct = STEP_CORRECT[name]
    check(correct)
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and printed[0].startswith("\u2713")


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
