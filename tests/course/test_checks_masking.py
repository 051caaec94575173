"""check_random_masking (mae.checks, step 03): each mistaken masking caught and named, each correct one
passing; the same message from run to run, and the global random state left alone.
"""

import contextlib
import io

import pytest
import torch
from learner_code import (
    CORRECT,
    MISTAKES,
    masking_official_style,
    masking_own_order,
    messages_of_two_seeds,
    of_step_file,
)

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
    messages = messages_of_two_seeds(
        checks.check_random_masking, masking_own_order
    )  # from the global generator
    assert messages[0] == messages[1]


def test_masking_check_leaves_the_random_state_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    with contextlib.redirect_stdout(io.StringIO()):
        checks.check_random_masking(masking_official_style)
    assert torch.equal(torch.rand(3), expected)
