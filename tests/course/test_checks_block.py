"""check_block (mae.checks, step 05), beyond the mistake suite of test_checks_suite.py: the same message from run
to run.
"""

from learner_code import BlockNorm1BeforeMlp, messages_of_two_seeds

from mae import checks


def test_messages_are_the_same_from_run_to_run():
    messages = messages_of_two_seeds(checks.check_block, BlockNorm1BeforeMlp)
    assert messages[0] == messages[1]
