"""The engine's flags (mae.engine.flags): numbers checked when parsed, by every job; and a job's bad input
ends in one message saying where, not under a traceback (run_cli).
"""

import os
import subprocess
import sys

import pytest
from helpers import ROOT

from mae import finetune, pretrain


@pytest.mark.parametrize(
    "flag, value",
    [("--batch_size", "0"), ("--accum_iter", "0"), ("--save_every", "0"), ("--log_every", "0"),
     ("--save_epochs", "0"), ("--epochs", "0"), ("--max_steps", "0"), ("--batch_size", "-2"),
     ("--mask_ratio", "0"), ("--mask_ratio", "1"), ("--warmup_epochs", "-1"), ("--num_workers", "-1")],
)  # fmt: skip
def test_numeric_flags_are_checked_when_parsed(flag, value, capsys):
    with pytest.raises(SystemExit):
        pretrain.get_args_parser().parse_args([flag, value])
    assert f"argument {flag}: must be" in capsys.readouterr().err
    if flag != "--mask_ratio":  # the engine's flags: every job checks them
        with pytest.raises(SystemExit):
            finetune.get_args_parser().parse_args([flag, value])


def test_a_job_says_what_is_wrong_in_one_message_not_under_a_traceback(tmp_path):
    argv = [sys.executable, "-m", "mae.pretrain", "--data_path", "builtin:cifar", "--device", "cpu",
            "--output_dir", str(tmp_path)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "error: unknown built-in dataset 'builtin:cifar'; use builtin," in done.stderr
    assert "(raised at pretraining.py:" in done.stderr  # where, in one line
    shown = subprocess.run(argv, cwd=ROOT, env={**env, "MAE_TRACEBACK": "1"}, capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert shown.returncode == 1 and "Traceback" in shown.stderr and "build_pretrain_dataset" in shown.stderr
