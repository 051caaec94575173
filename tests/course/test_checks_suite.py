"""The mistake suite (tests/course/learner_code.py) through the checks of mae.checks: every mistaken implementation
caught and its mistake named, every correct one passing with one \u2713 line, rectangular images optional for code
that takes square ones only. Run one step's entries with -k, e.g. `pytest tests/course/test_checks_suite.py -k masking`.
"""

import pytest
from learner_code import CORRECT, MISTAKES, SquareMAE, SquarePatchEmbed, SquareVisionTransformer

import mae.models as ref
from mae import checks


@pytest.mark.parametrize("name", list(MISTAKES))
def test_mistake_is_caught_and_named(name):
    check, mistaken, pattern = MISTAKES[name]
    with pytest.raises(AssertionError, match=pattern):
        check(mistaken)


@pytest.mark.parametrize("name", list(CORRECT))
def test_correct_variant_passes(name, capsys):
    check, correct = CORRECT[name]
    check(correct)
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and printed[0].startswith("\u2713")


@pytest.mark.parametrize("check, square_only", [
    (checks.check_patch_embed, SquarePatchEmbed),
    (checks.check_encoder, SquareMAE),
    (checks.check_decoder, SquareMAE),
    (checks.check_mae, SquareMAE),
    (checks.check_classifier, SquareVisionTransformer),
])  # fmt: skip
def test_rectangular_images_are_optional(check, square_only, capsys):
    check(square_only)
    line = capsys.readouterr().out.strip()
    assert "optional check with (16, 24) images with 2 channels skipped (your code raised ValueError" in line
    check(getattr(ref, square_only.__name__.removeprefix("Square")))
    assert capsys.readouterr().out.strip().endswith("(16, 24) images with 2 channels too")
