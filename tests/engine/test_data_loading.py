"""Feeding the training loop (mae.engine.data, mae.engine.loop's loader): data workers from the task's CPUs,
and persistent workers that serve every epoch with samples fixed by (seed, epoch, index).
"""

import json
import os
import subprocess
import sys

import pytest
from helpers import ROOT, make_folder

from mae import pretrain
from mae.engine import distributed
from mae.engine.data import default_workers


@pytest.mark.parametrize("cores, env, workers", [
    (64, {"SLURM_CPUS_PER_TASK": "10"}, 9),  # mae.submit's task on an unbound node: its 10 CPUs, one for training
    (10, {"SLURM_CPUS_PER_TASK": "10"}, 9),  # the same, bound to its CPUs
    (96, {"SLURM_CPUS_PER_TASK": "40", "LOCAL_WORLD_SIZE": "8"}, 4),  # torchrun's 8 processes in one 40-CPU task
    (96, {"LOCAL_WORLD_SIZE": "8"}, 10),  # 12 cores each: at most 10, the official default
    (2, {}, 1),
])  # fmt: skip
def test_data_workers_fit_the_cpus_of_the_task(cores, env, workers, no_launcher):
    no_launcher.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    for key, value in env.items():
        no_launcher.setenv(key, value)
    assert default_workers(distributed.Context()) == workers


def test_data_workers_default_to_the_machine(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert default_workers(None) == 3  # 16 cores shared by 4 processes, one core each for the process
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert default_workers(None) == 10  # at most the official 10
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0}, raising=False)
    assert default_workers(None) == 0
    assert pretrain.get_args_parser().parse_args([]).num_workers is None  # decided in the training process


def test_workers_serve_every_epoch_and_samples_stay_fixed_by_seed_epoch_index(tmp_path):
    """Persistent workers (started once per run, not at every epoch) hold their own copy of the dataset: the epoch
    travels with each index, so two epochs with 2 workers give exactly the losses of the run without workers."""
    make_folder(tmp_path / "data", count=16, corrupt=False)
    started = tmp_path / "started"
    common = ["--model", "mae_vit_tiny_patch8", "--input_size", "32", "--data_path", str(tmp_path / "data"),
              "--device", "cpu", "--batch_size", "4", "--epochs", "2", "--warmup_epochs", "1", "--log_every", "1"]  # fmt: skip
    code = f"""
import sys
from mae import pretrain
from mae.engine import loop
real = loop.ignore_stop_signals  # the loader's worker_init_fn
def counted(worker_id):
    with open({str(started)!r}, "a") as f:
        f.write(f"{{worker_id}}\\n")
    real(worker_id)
loop.ignore_stop_signals = counted
pretrain.main(sys.argv[1:])
"""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    losses = {}
    for workers in ("0", "2"):
        out = tmp_path / f"w{workers}"
        done = subprocess.run([sys.executable, "-c", code, *common, "--num_workers", workers, "--output_dir", str(out)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
        losses[workers] = [(r["step"], r["loss"]) for r in records if r["kind"] == "train"]
    assert losses["2"] == losses["0"] and len(losses["0"]) == 8  # 2 epochs of 4 steps
    assert started.read_text().split() == ["0", "1"]  # two workers, started once for both epochs
