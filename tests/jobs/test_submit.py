"""Jobs on SLURM (mae.submit): its Trainer runs the engine and fine-tuning with its preset (in submitit's
debug executor, no cluster needed); without SLURM it refuses unless asked to run locally.
"""

import os
from types import SimpleNamespace

import pytest

import mae
from mae import submit


def submit_in_debug_executor(trainer, jobs_folder, monkeypatch, port):
    """Run a submit.Trainer in submitit's in-process debug executor, keeping the SLURM-like variables it sets
    (RANK, WORLD_SIZE, ...) out of the other tests."""
    import submitit

    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MASTER_PORT", str(port))
    saved = dict(os.environ)
    try:
        submitit.AutoExecutor(folder=jobs_folder, cluster="debug").submit(trainer).result()
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.mark.integration
def test_submitit_trainer_runs_the_engine(tmp_path, monkeypatch):
    """The SLURM entry point, run by submitit's in-process debug executor (no cluster needed)."""
    args = submit.get_args_parser().parse_args(
        ["--model", "mae_vit_tiny_patch8", "--input_size", "32", "--data_path", "builtin:digits", "--device", "cpu",
         "--num_workers", "0", "--batch_size", "8", "--max_steps", "2", "--output_dir", str(tmp_path / "run")]
    )  # fmt: skip
    submit_in_debug_executor(submit.Trainer(submit.engine_args(args)), tmp_path / "jobs", monkeypatch, 29533)
    checkpoint = mae.read_checkpoint(tmp_path / "run" / "checkpoint-last.pth")
    assert checkpoint["step"] == 2 and checkpoint["model_config"]["in_chans"] == 1


@pytest.mark.integration
def test_submitit_runs_fine_tuning_with_its_preset(tmp_path, monkeypatch):
    args = submit.parse_args(
        ["--job", "finetune", "--preset", "vit_base", "--model", "vit_mini_patch8", "--input_size", "32",
         "--device", "cpu", "--num_workers", "0", "--batch_size", "8", "--effective_batch", "8", "--max_steps", "1",
         "--output_dir", str(tmp_path / "run")]
    )  # fmt: skip
    preset = (args.job, args.layer_decay, args.blr, args.mixup)
    assert preset == ("finetune", 0.65, 5e-4, 0.8)  # the preset's values, under the flags given
    submit_in_debug_executor(
        submit.Trainer(submit.engine_args(args), args.job), tmp_path / "jobs", monkeypatch, 29534
    )
    assert mae.read_checkpoint(tmp_path / "run" / "checkpoint-last.pth")["step"] == 1


def test_submit_without_slurm_refuses_unless_asked_to_run_locally(tmp_path, monkeypatch, capsys):
    import submitit

    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch
    argv = ["--output_dir", str(tmp_path / "run"), "--max_steps", "1"]
    with pytest.raises(SystemExit, match=r"no SLURM on this machine .*--local"):
        submit.main(argv)
    submitted = []
    monkeypatch.setattr(
        submitit.AutoExecutor,
        "submit",
        lambda self, trainer: submitted.append(trainer) or SimpleNamespace(job_id="7"),
    )
    submit.main([*argv, "--local"])
    assert "job 7 runs locally, in the background on this machine" in capsys.readouterr().out
    assert isinstance(submitted[0], submit.Trainer) and not hasattr(submitted[0].args, "local")
