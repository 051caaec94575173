"""The run's logs (mae.engine.logs): a torn last line (a kill or a full disk mid-write) is left out with a
warning, and stops neither the next run nor the readers.
"""

import json
import math

import pytest
from helpers import flags, pretrain_here

from mae import classify


@pytest.mark.integration
def test_a_torn_last_log_line_does_not_stop_the_next_run(tmp_path):
    out = tmp_path / "run"
    pretrain_here(flags(out, "--max_steps", "2"))
    with (out / "log.jsonl").open("a") as f:
        f.write('{"kind": "train", "st')  # a kill or a full disk in the middle of a write
    (out / "log.txt").write_text('{"train_lr": 0.001, "train_loss": 0.5, "epoch": 0}\n{"train_lr": 0.0')
    assert classify.best_logged_accuracy(out) == -math.inf
    with pytest.warns(UserWarning, match="left out 1 unreadable line"):
        pretrain_here(flags(out, "--max_steps", "4"))
    lines = (out / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines if '"train"' in line] == [1, 2, 3, 4]
