"""check_pos_embed (mae.checks, step 02), beyond the mistake suite of test_checks_suite.py: a wrong optional
extension reported, never blocking the step.
"""

import re

from learner_code import pos_embed_xy_rows_first

from mae import checks


def test_a_wrong_extension_is_reported_but_never_blocks_the_step(capsys):
    """Right on square grids, where two swaps cancel; it takes (h, w) grids too, and gets them wrong."""
    checks.check_pos_embed(pos_embed_xy_rows_first)
    first, second = capsys.readouterr().out.strip().splitlines()
    assert first.startswith("\u2713 ")
    assert re.search(
        r"optional, not needed by MAE: your code accepts a \(2, 3\) grid.*indexing=\"ij\"", second
    )
