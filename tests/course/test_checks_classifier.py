"""check_classifier (mae.checks, step 12): each mistaken VisionTransformer caught and named, a learner's wrong
Block blamed by name, each correct one passing, rectangular images optional.
"""

import pytest
from learner_code import CORRECT, MISTAKES, SquareVisionTransformer, of_step_file

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


@pytest.mark.parametrize("check, square_only", [(checks.check_classifier, SquareVisionTransformer)])  # fmt: skip
def test_rectangular_images_are_optional(check, square_only, capsys):
    check(square_only)
    line = capsys.readouterr().out.strip()
    assert "optional check with (16, 24) images with 2 channels skipped (your code raised ValueError" in line
    check(getattr(ref, square_only.__name__.removeprefix("Square")))
    assert capsys.readouterr().out.strip().endswith("(16, 24) images with 2 channels too")
