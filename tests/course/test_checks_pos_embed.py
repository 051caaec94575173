"""check_pos_embed (mae.checks, step 02): each mistaken position table caught and named, each correct one
passing; a wrong optional extension reported, never blocking the step.
"""

import re

import pytest
from learner_code import CORRECT, MISTAKES, of_step_file, pos_embed_xy_rows_first

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


def test_a_wrong_extension_is_reported_but_never_blocks_the_step(capsys):
    """Right on square grids, where two swaps cancel; it takes (h, w) grids too, and gets them wrong."""
    checks.check_pos_embed(pos_embed_xy_rows_first)
    first, second = capsys.readouterr().out.strip().splitlines()
    assert first.startswith("\u2713 ")
    assert re.search(
        r"optional, not needed by MAE: your code accepts a \(2, 3\) grid.*indexing=\"ij\"", second
    )
