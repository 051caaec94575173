"""The benchmarks (benchmarks/): the speed benchmark counts FLOPs right and runs, the checkpoint-stall
measurement runs, the GPU script runs every part; speed itself is measured there, never asserted here.
"""

import json
import sys

import pytest
import torch
from helpers import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

import checkpoint_stall  # noqa: E402
import data_path  # noqa: E402
import pretrain_speed  # noqa: E402

from mae.models import create_model  # noqa: E402


@pytest.mark.parametrize(
    "name, gflops",
    [("mae_vit_base_patch16", 58.7), ("mae_vit_large_patch16", 124.5), ("mae_vit_huge_patch14", 291.4)],
)
def test_training_flops_per_image(name, gflops):
    with torch.device("meta"):
        model = create_model(name)
    assert pretrain_speed.train_flops_per_image(model, 0.75) / 1e9 == pytest.approx(gflops, abs=0.05)


def test_the_data_path_benchmark_runs_every_pipeline_and_the_loader_rows(tmp_path, capsys):
    report = data_path.main(
        ["--files", "6", "--rounds", "2", "--workers", "1", "--json", str(tmp_path / "d.json")]
    )
    rows = list(report["per_core"])
    assert len(rows) == 6 and rows[0].startswith("official") and rows[2].startswith("tensor path")
    assert all(r["images_per_s"] > 0 and len(r["rounds"]) == 2 for r in report["per_core"].values())
    assert report["per_core"][rows[0]]["vs_official"] == 1.0 and len(report["workers"]) == 2
    out = capsys.readouterr().out
    assert "x official" in out and "ViT-B/16 at 7,400 images/s on one GPU needs" in out
    assert json.loads((tmp_path / "d.json").read_text())["files"] == 6


def test_benchmark_runs_and_reports_every_variant(tmp_path, capsys):
    results = pretrain_speed.main(
        [
            "--batch_size",
            "4",
            "--steps",
            "1",
            "--warmup",
            "1",
            "--rounds",
            "1",
            "--ceiling_size",
            "256",
            "--json",
            str(tmp_path / "r.json"),
        ]
    )
    assert [r["variant"] for r in results] == [
        "baseline",
        "+ SDPA",
        "+ no host sync",
        "+ fused AdamW",
        "production",
    ]
    assert results[0]["settings"] == pretrain_speed.BASELINE and results[-1]["settings"]["sdpa"]
    assert all(r["images_per_s"] > 0 and 0 < r["mfu"] for r in results)
    assert (
        "vs baseline" in (out := capsys.readouterr().out)
        and "at the ceiling" in out
        and "linear layers only" in out
        and (tmp_path / "r.json").exists()
    )


@pytest.mark.integration
def test_end_to_end_rows_on_real_jpegs(tmp_path, capsys):
    results = pretrain_speed.main(
        ["--batch_size", "4", "--steps", "1", "--warmup", "1", "--rounds", "1", "--ceiling_size", "256",
         "--data", str(tmp_path / "jpegs"), "--make_jpegs", "8", "--workers", "0", "--e2e_steps", "6",
         "--e2e_batch_sizes", "2", "4", "--json", str(tmp_path / "r.json")]
    )  # fmt: skip
    written = json.loads((tmp_path / "r.json").read_text())  # --data with --json: paths written as strings
    assert written["args"]["data"] == str(tmp_path / "jpegs") and len(written["results"]) == len(results)
    rows = {r["variant"]: r for r in results}
    assert list(rows)[-5:] == ["production, batch 2", "end to end, PIL, batch 2", "end to end, device, batch 2",
                               "end to end, PIL, batch 4", "end to end, device, batch 4"]  # fmt: skip
    for batch, production in ((2, rows["production, batch 2"]), (4, rows["production"])):
        for decoder in ("PIL", "device"):  # against the production step on synthetic data at the same batch
            row = rows[f"end to end, {decoder}, batch {batch}"]
            assert row["vs_synthetic"] == pytest.approx(row["images_per_s"] / production["images_per_s"])
            # 6 steps of `batch` from 8 files: several passes over the folder, timed in two halves
            assert row["steps"] == 6 and row["batch_size"] == batch and row["first_half_images_per_s"] > 0
    assert (
        all(r["images_per_s"] > 0 for r in results)
        and "of production on synthetic data" in capsys.readouterr().out
    )


def test_end_to_end_steps_need_two_halves():
    with pytest.raises(SystemExit):
        pretrain_speed.main(["--e2e_steps", "1"])


def test_the_stall_measurement_runs(tmp_path):
    result = checkpoint_stall.measure("mae_vit_tiny_patch8", tmp_path, rounds=1, alone_seconds=0.1)
    assert {"sync_s", "blocked_s", "blocked_first_s", "write_s", "loop_alone", "loop_during_write"} <= set(
        result
    )
    assert len(result["sync_s"]) == len(result["blocked_s"]) == 1 and result["state_gb"] > 0


@pytest.mark.integration
def test_the_gpu_script_runs_every_part_as_it_stands(tmp_path):
    """benchmarks/gpu_first_look.sh with SMOKE=1 on the CPU: the same commands and flags on tiny models, so the first
    GPU lent runs it without a fix; each part leaves its log and JSON."""
    import os
    import subprocess

    root = ROOT
    env = {**os.environ, "SMOKE": "1", "DEVICE": "cpu", "PYTHON": sys.executable, "OUT": str(tmp_path),
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    done = subprocess.run(["bash", "benchmarks/gpu_first_look.sh"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "skipped" in (tmp_path / "tests.log").read_text()  # no GPU here: test_gpu.py skips, and says so
    vitl = json.loads((tmp_path / "vitl.json").read_text())
    assert [r["variant"] for r in vitl["results"]][-2:] == ["end to end, PIL, batch 4", "end to end, device, batch 4"]  # fmt: skip
    assert json.loads((tmp_path / "vitb.json").read_text())["results"]
    assert json.loads((tmp_path / "checkpoint.json").read_text())["blocked_s"]
    assert "exit 0" in done.stdout
    bad = subprocess.run(["bash", "benchmarks/gpu_first_look.sh", "vitz"], cwd=root, env=env, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert bad.returncode == 2 and "unknown part 'vitz'" in bad.stderr
