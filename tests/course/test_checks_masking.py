"""check_random_masking (mae.checks, step 03), beyond the mistake suite of test_checks_suite.py: the same message
from run to run, and the global random state left alone.
"""

import contextlib
import io

import torch
from learner_code import (
    masking_official_style,
    masking_own_order,
    messages_of_two_seeds,
)

from mae import checks


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
