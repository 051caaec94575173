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


@pytest.mark.parametrize(
    "job, flag, value, says",
    [("pretrain", "--warmup_epochs", "inf", "finite"), ("pretrain", "--lr", "inf", "finite"),
     ("pretrain", "--weight_decay", "inf", "finite"), ("pretrain", "--blr", "nan", "finite"),
     ("pretrain", "--seed", "-1", "2**32 - 1"), ("pretrain", "--seed", str(2**32), "2**32 - 1"),
     ("finetune", "--layer_decay", "nan", "positive"), ("finetune", "--layer_decay", "-1", "positive"),
     ("finetune", "--smoothing", "nan", "not including, 1"), ("finetune", "--smoothing", "1.5", "not including, 1"),
     ("finetune", "--drop_path", "1.5", "not including, 1"), ("finetune", "--reprob", "2", "probability"),
     ("finetune", "--mixup_prob", "-0.1", "probability"), ("finetune", "--mixup", "-1", "0 or more"),
     ("finetune", "--cutmix", "inf", "finite"), ("finetune", "--recount", "0", "positive"),
     ("finetune", "--remode", "bogus", "invalid choice"),
     ("finetune", "--aa", "rand-bogus", "bogus is not a setting"), ("finetune", "--aa", "rand-x5", "not a timm"),
     ("finetune", "--aa", "bogus", "not a timm auto-augment policy"),
     ("finetune", "--nb_classes", "100000000000", "1,000,000"), ("linprobe", "--nb_classes", "0", "from 1"),
     ("finetune", "--effective_batch", "-16", "positive"), ("linprobe", "--effective_batch", "0", "positive"),
     ("submit", "--ngpus", "0", "positive"), ("submit", "--nodes", "-1", "positive")],
)  # fmt: skip
def test_flags_that_would_train_nothing_useful_are_refused_by_name(job, flag, value, says, capsys):
    """Accepted before (inf, NaN, a negative mixup, an unknown augmentation section) or refused deep inside."""
    from mae import linprobe, submit

    parser = {"pretrain": pretrain.get_args_parser, "finetune": finetune.get_args_parser,
              "linprobe": linprobe.get_args_parser, "submit": submit.get_args_parser}[job]()  # fmt: skip
    with pytest.raises(SystemExit):
        parser.parse_args([flag, value])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"argument {flag}:" in err and says in err, err


def test_the_recipes_augmentation_policies_still_parse():
    for policy in ("rand-m9-mstd0.5-inc1", "rand-m9-n2", "augmix-m5-w4-d2", "original", "v0", "none"):
        assert finetune.get_args_parser().parse_args(["--aa", policy]).aa == policy


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
