"""check_encoder, check_decoder and check_mae (mae.checks, steps 06-08), beyond the mistake suite of
test_checks_suite.py: the earlier steps' checks run on the learner's own parts only (recorders passed as
earlier_checks), the same message from run to run.
"""

import contextlib
import io

from learner_code import (
    DecoderNoNorm,
    EncoderNoiseNotPassed,
    EncoderOwnMaskingOrder,
    MAEOwnCorrectParts,
    MAESquarePatchify,
    messages_of_two_seeds,
)

import mae.models as ref
from mae import checks


def test_messages_are_the_same_from_run_to_run():
    for check, mistaken in [
        (checks.check_decoder, DecoderNoNorm),
        (checks.check_encoder, EncoderNoiseNotPassed),
        (checks.check_encoder, EncoderOwnMaskingOrder),
    ]:
        messages = messages_of_two_seeds(check, mistaken)
        assert messages[0] == messages[1]


# The earlier steps' checks that check_mae runs on a learner's own parts, by the part each one checks.
EARLIER_CHECKS = {
    "PatchEmbed": "check_patch_embed",
    "get_2d_sincos_pos_embed": "check_pos_embed",
    "random_masking": "check_random_masking",
    "Attention": "check_attention",
    "Block": "check_block",
}


def test_earlier_steps_are_not_checked_for_the_reference_parts():
    """The pre-check of a model check runs only on the learner's own parts."""
    ran = []

    def recorder(name):
        return lambda *args, **kwargs: ran.append(name)

    earlier_checks = {part: recorder(name) for part, name in EARLIER_CHECKS.items()}
    with contextlib.redirect_stdout(io.StringIO()):
        checks.check_mae(ref.MAE, earlier_checks=earlier_checks)
        assert ran == []
        checks.check_mae(MAEOwnCorrectParts, earlier_checks=earlier_checks)
    assert sorted(ran) == ["check_attention", "check_block", "check_pos_embed", "check_random_masking"]


def test_an_assert_in_the_learners_code_skips_the_optional_part(capsys):
    checks.check_encoder(MAESquarePatchify)
    assert capsys.readouterr().out.strip().endswith("(16, 24) images with 2 channels too")
    checks.check_mae(MAESquarePatchify)
    assert "skipped (your code raised AssertionError" in capsys.readouterr().out
