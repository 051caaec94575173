"""check_block (mae.checks, step 05): each mistaken Block caught and named, each correct one passing, the same
message from run to run.
"""

import pytest
from learner_code import CORRECT, MISTAKES, BlockNorm1BeforeMlp, messages_of_two_seeds, of_step_file

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
    messages = messages_of_two_seeds(checks.check_block, BlockNorm1BeforeMlp)
    assert messages[0] == messages[1]
