"""Processes and devices (mae.engine.distributed): the device chosen where training runs (--device auto), the
launchers' variables (torchrun, srun, sbatch, submitit), ports and rendezvous, one GPU per process, NCCL or
gloo; and several processes training as one.

No GPU is needed: launchers are faked with environment variables, GPUs with monkeypatched `torch.cuda`
functions and a recorded `torch.distributed.init_process_group` (the no_launcher and gpus fixtures of
conftest.py). Whole training jobs (and anything that starts processes) are `integration`.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers import (
    ENV,
    LAST,
    ROOT,
    TINY_DIGITS,
    flags,
    image_folder,
    losses,
    make_folder,
    pretrain_command,
    pretrain_here,
    records,
    run_command,
    run_here,
    steps,
)

import mae
from mae import finetune, linprobe, pretrain, submit
from mae.checkpoint import read_checkpoint
from mae.engine import distributed


@pytest.mark.parametrize(
    "parser",
    [pretrain.get_args_parser, finetune.get_args_parser, linprobe.get_args_parser, submit.get_args_parser],
)
def test_device_defaults_to_auto_whatever_the_parsing_host_sees(parser, gpus):
    gpus(8)  # parsed on a GPU host: the default must still not be decided here
    assert parser().parse_args([]).device == "auto"


def test_auto_is_resolved_in_the_process_and_said_first(no_launcher, gpus, capsys):
    gpus(0)
    context = distributed.init("auto")
    assert context.device == torch.device("cpu") and not context.distributed
    assert capsys.readouterr().out.splitlines()[0] == "device cpu (--device auto: no GPU visible)"
    gpus(4)
    assert distributed.init("auto").device.type == "cuda"
    assert capsys.readouterr().out.splitlines()[0] == "device cuda (--device auto: 4 GPUs visible)"
    distributed.init("cpu")  # given on the command line: nothing to add
    assert capsys.readouterr().out == ""


def test_a_job_submitted_from_a_host_without_gpu_trains_on_the_gpus_of_its_node(tmp_path, no_launcher, gpus):
    """mae.submit on a login node (no GPU; an sbatch that is never called: the submission is recorded), then the
    payload submitit ships, unpickled and run as task 11 of 16 (local rank 3) on a node with 8 GPUs."""
    import submitit

    gpus(0)  # the login node
    (tmp_path / "bin").mkdir()
    for command in ("sbatch", "srun"):  # what submitit looks for; never run
        (tmp_path / "bin" / command).write_text("#!/bin/sh\nexit 1\n")
        (tmp_path / "bin" / command).chmod(0o755)
    no_launcher.setenv("PATH", str(tmp_path / "bin"))  # submitit sees SLURM
    submitted = []
    no_launcher.setattr(submitit.AutoExecutor, "submit",
                        lambda self, trainer: submitted.append(trainer) or SimpleNamespace(job_id="4242"))  # fmt: skip
    submit.main(["--nodes", "2", "--ngpus", "8", "--output_dir", str(tmp_path / "run")])
    payload = tmp_path / "payload.pkl"
    submitit.helpers.DelayedSubmission(submitted[0]).dump(payload)  # what submitit writes for the job
    assert submitted[0].args.device == "auto"

    calls = gpus(8)  # the compute node
    no_launcher.setenv("SLURM_JOB_ID", "4242")
    job = SimpleNamespace(
        global_rank=11, num_tasks=16, local_rank=3, hostnames=["node07", "node08"], job_id="4242"
    )
    no_launcher.setattr(submitit, "JobEnvironment", lambda: job)
    contexts = []
    no_launcher.setitem(
        submit.JOBS, "pretrain", (None, {}, lambda args: contexts.append(distributed.init(args.device)))
    )
    submitit.helpers.DelayedSubmission.load(payload).result()
    [context] = contexts
    assert (context.rank, context.world_size, context.device) == (11, 16, torch.device("cuda", 3))
    assert calls.set_device == [torch.device("cuda", 3)]
    assert calls.groups == [dict(backend="nccl", init_method="env://", rank=11, world_size=16)]
    assert os.environ["MASTER_ADDR"] == "node07" and os.environ["MASTER_PORT"] == "14242"  # from the job id


@pytest.mark.integration
def test_a_run_without_device_flag_says_what_it_resolved_first(tmp_path, no_launcher, capsys):
    pretrain_here([*TINY_DIGITS, "--output_dir", str(tmp_path), "--max_steps", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "device cpu (--device auto: no GPU visible)" and "device cpu, amp None" in lines[1]
    assert read_checkpoint(tmp_path / LAST)["args"]["device"] == "auto"


def test_torchrun_variables_describe_the_processes():
    launch = distributed.read_launch(
        {"RANK": "9", "WORLD_SIZE": "16", "LOCAL_RANK": "1", "MASTER_PORT": "29400"}
    )
    assert launch == distributed.Launch("torchrun", 9, 16, 1)  # torch reads torchrun's rendezvous itself
    inside_slurm = {"RANK": "1", "WORLD_SIZE": "2", "SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "1"}
    assert distributed.read_launch(inside_slurm).launcher == "torchrun"  # srun torchrun ...: torchrun's view


def test_srun_without_torchrun_gives_every_task_its_rank():
    env = {"SLURM_PROCID": "5", "SLURM_STEP_NUM_TASKS": "16", "SLURM_NTASKS": "16", "SLURM_LOCALID": "1",
           "SLURM_JOB_ID": "123456", "SLURM_STEP_NODELIST": "gpu[07-08]", "SLURM_JOB_NODELIST": "gpu[07-08]"}  # fmt: skip
    assert distributed.read_launch(env) == distributed.Launch("slurm", 5, 16, 1, "gpu07", 13456)
    ranks = {distributed.read_launch({**env, "SLURM_PROCID": str(r)}).rank for r in range(16)}
    assert ranks == set(range(16))  # not sixteen rank 0s writing one folder
    given = distributed.read_launch({**env, "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "23456"})
    assert (given.address, given.port) == ("10.0.0.1", 23456)


def test_a_batch_script_without_srun_is_one_process():
    """sbatch --ntasks 8 sets SLURM_NTASKS=8 for the script itself; a plain `python -m mae.pretrain` there is one
    process, which must not wait for seven others."""
    batch = {"SLURM_PROCID": "0", "SLURM_NTASKS": "8", "SLURM_LOCALID": "0", "SLURM_JOB_ID": "7"}
    assert distributed.read_launch(batch) == distributed.Launch()
    assert distributed.read_launch({}) == distributed.Launch()


def test_ports_come_from_the_job_not_a_fixed_29500():
    ports = {distributed.port_for_job(job) for job in range(1000, 1100)}
    assert len(ports) == 100 and all(10000 <= p < 30000 for p in ports)
    assert distributed.port_for_job("4242") == 14242
    assert 10000 <= distributed.port_for_job("123_4") < 30000  # submitit's array ids, a local executor's pid
    env = {"SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "2", "SLURM_STEP_NODELIST": "n1"}
    assert (
        distributed.read_launch({**env, "SLURM_JOB_ID": "1001"}).port
        != distributed.read_launch({**env, "SLURM_JOB_ID": "1002"}).port
    )  # two jobs sharing a node


@pytest.mark.parametrize("nodelist, host", [("gpu[07-09,12],cpu1", "gpu07"), ("node5,node6", "node5"),
                                            ("a[1-2]-ib[3-4]", "a1-ib3"), ("single", "single")])  # fmt: skip
def test_the_rendezvous_is_the_first_node_of_the_step(nodelist, host):
    assert distributed.first_host(nodelist) == host


@pytest.mark.parametrize("env, message", [
    ({"RANK": "4", "WORLD_SIZE": "2"}, r"RANK=4, WORLD_SIZE=2.*a rank must lie in \[0, world size\)"),
    ({"RANK": "one", "WORLD_SIZE": "2"}, r"RANK='one' in the environment is not an integer"),
    ({"SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "2", "SLURM_STEP_NODELIST": "n1"}, r"set MASTER_PORT"),
    ({"SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "2", "SLURM_JOB_ID": "5"}, r"set MASTER_ADDR"),
    ({"SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "2", "MASTER_ADDR": "h", "MASTER_PORT": "70000"}, "not a TCP port"),
])  # fmt: skip
def test_inconsistent_launcher_variables_are_named(env, message):
    with pytest.raises(ValueError, match=message):
        distributed.read_launch(env)


def test_one_gpu_bound_per_task_is_cuda_0(no_launcher, gpus):
    """srun --gpus-per-task=1 (or --gpu-bind): each task sees one GPU, so set_device(local_rank) would fail."""
    calls = gpus(8)
    no_launcher.setenv("CUDA_VISIBLE_DEVICES", "5")
    env = {"SLURM_PROCID": "13", "SLURM_STEP_NUM_TASKS": "16", "SLURM_LOCALID": "5", "SLURM_JOB_ID": "99",
           "SLURM_STEP_NODELIST": "gpu[01-02]"}  # fmt: skip
    context = distributed.init("auto", env)
    assert context.device == torch.device("cuda", 0) and (context.rank, context.local_rank) == (13, 5)
    assert calls.set_device == [torch.device("cuda", 0)]
    assert calls.groups == [dict(backend="nccl", init_method="tcp://gpu01:10099", rank=13, world_size=16)]


def test_each_task_takes_the_gpu_of_its_local_rank(no_launcher, gpus):
    gpus(8)
    launch = distributed.Launch("slurm", 13, 16, 5, "n", 1)
    assert distributed.resolve_device("cuda", launch)[0] == torch.device("cuda", 5)
    gpus(4)  # more tasks on the node than GPUs
    with pytest.raises(RuntimeError, match="local rank 5 but sees only 4 GPUs.*one process per GPU"):
        distributed.resolve_device("auto", launch)


def test_cuda_0_under_torchrun_is_nccl_and_one_gpu_per_rank(no_launcher, gpus, capsys):
    """--device cuda:0 used to pick gloo and put every rank on GPU 0; now NCCL, each rank on its local GPU."""
    calls = gpus(8)
    for rank in (0, 1):
        env = {"RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank)}
        assert distributed.init("cuda:0", env).device == torch.device("cuda", rank)
    assert [g["backend"] for g in calls.groups] == ["nccl", "nccl"]
    assert calls.set_device == [torch.device("cuda", 0), torch.device("cuda", 1)]
    said = capsys.readouterr().out  # rank 0 says why the index was not taken literally
    assert "--device cuda:0 names one GPU, but each of the 2 processes takes its own" in said
    assert "2 processes from torchrun, rank 0 (local 0), backend nccl" in said


def test_one_process_keeps_the_gpu_it_was_given(no_launcher, gpus):
    gpus(2)
    assert distributed.init("cuda:1").device == torch.device("cuda", 1)
    with pytest.raises(RuntimeError, match="--device cuda:3, but this process sees 2 GPUs"):
        distributed.init("cuda:3")
    gpus(0)
    with pytest.raises(RuntimeError, match="no GPU is visible; pass --device cpu"):
        distributed.init("cuda")
    with pytest.raises(ValueError, match="'gpu' is not a device"):
        distributed.init("gpu")


def test_cpu_processes_use_gloo(no_launcher, gpus):
    calls = gpus(8)
    context = distributed.init("cpu", {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    assert (
        context.device == torch.device("cpu")
        and calls.groups[0]["backend"] == "gloo"
        and not calls.set_device
    )


def test_one_visible_gpu_without_binding_is_refused_for_a_second_local_rank():
    """Two processes on a one-GPU machine (no CUDA_VISIBLE_DEVICES binding) must not both take cuda:0."""
    assert distributed.local_gpu(0, 1) == 0
    assert distributed.local_gpu(3, 1, visible="5") == 0  # bound by the cluster: its one GPU is cuda:0
    with pytest.raises(RuntimeError, match="local rank 1 but sees only 1 GPUs"):
        distributed.local_gpu(1, 1)


@pytest.mark.integration
def test_srun_without_torchrun_trains_like_one_process(tmp_path, no_launcher):
    """Two processes started as srun starts them (SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_LOCALID; no torchrun,
    no MASTER_PORT): they find each other at the port of the job, and equal one process at the same batch."""
    single = tmp_path / "single"
    common = [sys.executable, "-m", "mae.pretrain", *TINY_DIGITS, "--max_steps", "3", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    subprocess.run([*common, "--output_dir", str(single)], cwd=ROOT, env=env, check=True, capture_output=True)
    double, job = tmp_path / "double", str(20000 + os.getpid() % 10000)
    argv = [*common, "--batch_size", "4", "--output_dir", str(double)]
    tasks = [subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**env, "SLURM_PROCID": str(r), "SLURM_LOCALID": str(r), "SLURM_STEP_NUM_TASKS": "2",
                                   "SLURM_NTASKS": "2", "SLURM_JOB_ID": job, "SLURM_STEP_NODELIST": "localhost"})
             for r in (0, 1)]  # fmt: skip
    outputs = [task.communicate(timeout=600) for task in tasks]
    assert [t.returncode for t in tasks] == [0, 0], outputs[0][1][-3000:] + outputs[1][1][-3000:]
    port = distributed.port_for_job(job)
    assert (
        f"2 processes from slurm, rank 0 (local 0), backend gloo, rendezvous localhost:{port}"
        in outputs[0][0]
    )
    assert outputs[1][0] == ""  # rank 1 prints nothing and writes nothing
    lines = [json.loads(line) for line in (double / "log.jsonl").read_text().splitlines()]
    assert lines[-1]["kind"] == "end" and lines[-1]["replicas_identical"] is True
    one, two = (mae.read_checkpoint(folder / LAST)["model"] for folder in (single, double))
    for key in one:
        torch.testing.assert_close(one[key], two[key], atol=2e-5, rtol=1e-4, msg=key)


@pytest.mark.integration
@pytest.mark.skipif(
    shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None, reason="torchrun missing"
)
def test_torchrun_two_processes_equal_one_process(tmp_path):
    data = make_folder(tmp_path / "data", count=32, corrupt=False)
    steps = ["--max_steps", "3", "--save_every", "100"]
    single = tmp_path / "single"
    run_here(pretrain_command(data, single, *steps))

    double = tmp_path / "double"
    torchrun = str(Path(sys.executable).parent / "torchrun")
    two = pretrain_command(data, double, *steps)[2:]  # drop "python -m"
    two[two.index("--batch_size") + 1] = "4"  # 2 processes x 4 = the same effective batch of 8
    result = run_command([torchrun, "--standalone", "--nproc_per_node", "2", "-m", *two])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "world size 2, effective batch 8 (4 per process x 1 accumulation x 2)" in result.stdout
    end = [json.loads(line) for line in (double / "log.jsonl").read_text().splitlines()][-1]
    assert end["kind"] == "end" and end["replicas_identical"] is True

    a = mae.read_checkpoint(single / "checkpoint-last.pth")["model"]
    b = mae.read_checkpoint(double / "checkpoint-last.pth")["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=2e-5, rtol=1e-4, msg=key)
    for (s1, l1), (s2, l2) in zip(losses(single), losses(double)):
        assert s1 == s2 and l1 == pytest.approx(l2, abs=1e-5)


@pytest.mark.integration
@pytest.mark.skipif(
    shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None, reason="torchrun missing"
)
def test_ranks_stay_in_step_when_a_batch_has_no_readable_image(tmp_path):
    """2 processes, 1 image each per micro-batch, half the files unreadable: before, a rank that skipped a batch
    paired its gradient all-reduce with another step of the other rank, and the run hung or diverged."""
    data = image_folder(tmp_path / "data", good=4, bad=4)
    out = tmp_path / "run"
    torchrun = str(Path(sys.executable).parent / "torchrun")
    argv = flags(out, "--batch_size", "1", "--accum_iter", "2", "--max_steps", "4", data=data)
    result = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "mae.pretrain", *argv],
                            capture_output=True, text=True, timeout=600, cwd=ROOT, env=ENV)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert steps(out) == [1, 2, 3, 4]
    assert records(out, "end")[-1]["replicas_identical"] is True
