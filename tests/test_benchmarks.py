"""The speed benchmark counts FLOPs right and runs; speed itself is measured there, never asserted here."""

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

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
         "--data", str(tmp_path / "jpegs"), "--make_jpegs", "8", "--workers", "0", "--json", str(tmp_path / "r.json")]
    )  # fmt: skip
    written = json.loads((tmp_path / "r.json").read_text())  # --data with --json: paths written as strings
    assert written["args"]["data"] == str(tmp_path / "jpegs") and len(written["results"]) == len(results)
    production = next(r for r in results if r["variant"] == "production")["images_per_s"]
    for row in results[
        -2:
    ]:  # each end-to-end row against the production step on synthetic data, not each other
        assert row["vs_synthetic"] == pytest.approx(row["images_per_s"] / production)
    assert [r["variant"] for r in results][-2:] == ["end to end, PIL", "end to end, device"]
    assert (
        all(r["images_per_s"] > 0 for r in results)
        and "of production on synthetic data" in capsys.readouterr().out
    )
