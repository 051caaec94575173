"""Running the checks (mae.checks: the registry CHECKS, run_checks, `python -m mae.checks`): every reference
step passes, every untouched stub fails saying it is not written yet, and the mistake suite as a whole (each
step's own mistakes are tested in test_checks_<step>.py).
"""

import subprocess
import sys

import pytest
from helpers import learners_stub
from learner_code import MISTAKES, mistake_suite_summary, run_mistake_suite

import mae.models as ref
from mae import checks


@pytest.mark.parametrize("step", list(checks.CHECKS))
def test_every_solution_passes(step, capsys):
    _, check, name = checks.CHECKS[step]
    check(getattr(ref, name))
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and printed[0].startswith("\u2713")


@pytest.mark.parametrize("step", list(checks.CHECKS))
def test_every_stub_fails(step):
    _, check, name = checks.CHECKS[step]
    with learners_stub(step) as exercises:  # as in the step's notebook: its own stub, the reference elsewhere
        with pytest.raises(AssertionError, match="not written yet"):
            check(getattr(exercises, name))


def test_terminal_runner():
    run = subprocess.run(
        [sys.executable, "-m", "mae.checks", "masking", "attention"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1
    assert (
        "\u2717 03 masking: not written yet (exercises/masking.py, in random_masking): argsort the noise"
        in run.stdout
    )
    assert "0 of 2 steps pass (exercises/)." in run.stdout
    assert checks.main(["--impl", "solutions"]) == 0


def test_mistake_suite_summary():
    results = run_mistake_suite()
    summary = mistake_suite_summary(results)
    print(summary)
    assert all(message is not None for message, _ in results.values()), summary
    assert sum(named for _, named in results.values()) >= 0.9 * len(results), summary


def test_the_suite_keeps_the_mistakes_the_checks_once_missed():
    """Mistakes the checks once passed or named vaguely, one entry each (the three bugs they passed first among
    them): none may leave the suite."""
    for name in [
        "block: norm1 before the MLP", "attention: explicit path unscaled", "model: normalises without norm_pix_loss",
        "pos_embed: sin/cos interleaved", "pos_embed: exponent k / d", "pos_embed: meshgrid indexing=xy",
        "masking: mask gathered with ids_shuffle", "attention: qkv as (B, N, heads, 3, hd)", "attention: scaled twice",
        "block: no attention residual", "block: ReLU", "block: tanh GELU", "decoder: CLS in the unshuffle",
        "model: loss summed per patch", "patch_embed: Linear on (p, q, c) patches",
    ]:  # fmt: skip
        assert name in MISTAKES
