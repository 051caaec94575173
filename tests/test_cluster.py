"""Ready for a GPU cluster without one (issue 16): the device chosen where training runs, the launchers' variables,
native bf16 only, and checkpoints written in the background.

No GPU is needed: launchers are faked with environment variables, GPUs with monkeypatched `torch.cuda` functions
and a recorded `init_process_group`. Whole training jobs (and anything that starts processes) are `integration`.
"""

import inspect
import json
import os
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from test_robustness import pretrain_here  # a tiny in-process run on one thread, as its subprocesses

import mae
from mae import async_checkpoint, distributed, engine, finetune, linprobe, pretrain, submit
from mae.async_checkpoint import BackgroundWriter, HostBuffers
from mae.checkpoint import read_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parent.parent
LAST = "checkpoint-last.pth"
TINY = ["--model", "mae_vit_tiny_patch8", "--input_size", "32", "--data_path", "builtin:digits", "--num_workers", "0",
        "--batch_size", "8", "--warmup_epochs", "1", "--log_every", "1"]  # fmt: skip
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                    "CUDA_VISIBLE_DEVICES")  # fmt: skip


@pytest.fixture
def no_launcher(monkeypatch):
    """An environment without torchrun's or SLURM's variables (restored after the test)."""
    for key in {
        *LAUNCH_VARIABLES,
        "SLURM_JOB_ID",
        *(k for k in os.environ if k.startswith(("SLURM_", "SUBMITIT_"))),
    }:
        monkeypatch.setenv(key, "")  # noted, so that a value the code under test sets is undone too
        monkeypatch.delenv(key)
    return monkeypatch


@pytest.fixture
def gpus(monkeypatch):
    """Fake GPUs: gpus(8) makes torch.cuda report 8 visible devices (or as many as CUDA_VISIBLE_DEVICES lists),
    records set_device, and records init_process_group instead of starting a process group."""
    calls = SimpleNamespace(set_device=[], groups=[])

    def install(count):
        def device_count():
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            return len(visible.split(",")) if visible else count

        monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
        monkeypatch.setattr(torch.cuda, "device_count", device_count)
        monkeypatch.setattr(
            torch.cuda, "set_device", lambda device: calls.set_device.append(torch.device(device))
        )
        monkeypatch.setattr(
            distributed.dist, "init_process_group", lambda **kwargs: calls.groups.append(kwargs)
        )
        return calls

    return install


# --------------------------------------------------------------------------- 1. the device, chosen where training runs


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
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pretrain.main(
            pretrain.get_args_parser().parse_args([*TINY, "--output_dir", str(tmp_path), "--max_steps", "1"])
        )
    finally:
        torch.set_num_threads(threads)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "device cpu (--device auto: no GPU visible)" and "device cpu, amp None" in lines[1]
    assert read_checkpoint(tmp_path / LAST)["args"]["device"] == "auto"


# --------------------------------------------------------------------------- 2. launchers


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


@pytest.mark.integration
def test_srun_without_torchrun_trains_like_one_process(tmp_path, no_launcher):
    """Two processes started as srun starts them (SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_LOCALID; no torchrun,
    no MASTER_PORT): they find each other at the port of the job, and equal one process at the same batch."""
    single = tmp_path / "single"
    common = [sys.executable, "-m", "mae.pretrain", *TINY, "--max_steps", "3", "--device", "cpu"]
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


# --------------------------------------------------------------------------- 3. bf16 where native, one autocast


def test_bf16_only_where_the_gpu_computes_it_natively(monkeypatch):
    assert "including_emulation" in inspect.signature(torch.cuda.is_bf16_supported).parameters
    args = SimpleNamespace(amp=None)

    def gpu(native):  # is_bf16_supported as on that GPU: True with emulation everywhere from Volta on
        return lambda including_emulation=True: native or including_emulation

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", gpu(native=False))  # V100, T4
    assert (
        engine.amp_dtype(args, torch.device("cuda", 0)) == torch.float16
    )  # with the GradScaler (engine.start)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", gpu(native=True))  # A100, H100
    assert engine.amp_dtype(args, torch.device("cuda", 0)) == torch.bfloat16
    assert engine.amp_dtype(args, torch.device("cpu")) is None
    assert engine.amp_dtype(SimpleNamespace(amp="none"), torch.device("cuda")) is None  # a choice is kept


def test_one_autocast_for_every_forward_pass():
    sources = {p.name: p.read_text() for p in (ROOT / "mae").glob("*.py")}
    assert [name for name, text in sources.items() if "torch.autocast(" in text] == ["engine.py"]
    assert sources["engine.py"].count("torch.autocast(") == 1
    with engine.autocast(torch.device("cpu"), torch.bfloat16):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with engine.autocast("cpu", None):
        assert not torch.is_autocast_enabled("cpu")
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.float32


# --------------------------------------------------------------------------- 4. checkpoints written in the background


def test_a_snapshot_is_a_copy_in_reused_host_buffers():
    buffers = HostBuffers()
    state = OrderedDict(w=torch.arange(6.0).reshape(2, 3).t(), step=torch.tensor(3))
    state._metadata = {"": {"version": 1}}
    nest = {"model": state, "groups": [{"lr": 0.1, "params": [0, 1]}], "note": "x"}
    copy, ready = buffers.snapshot(nest)
    ready()
    state["w"].add_(100)  # the next optimizer step, in place
    nest["groups"][0]["lr"] = 0.2
    assert torch.equal(copy["model"]["w"], torch.arange(6.0).reshape(2, 3).t())
    assert copy["groups"] == [{"lr": 0.1, "params": [0, 1]}] and copy["model"]._metadata == state._metadata
    again, _ = buffers.snapshot(nest)
    assert again["model"]["w"].data_ptr() == copy["model"]["w"].data_ptr()  # allocated once
    assert torch.equal(again["model"]["w"], state["w"])


def test_training_goes_on_while_the_write_holds_the_state_it_was_given(tmp_path):
    """The save returns while the write is still blocked; the model then changes (as the next steps change it),
    and the file holds the state of the moment of the save, written atomically."""
    model = mae.create_model("mae_vit_tiny_patch8", img_size=32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    release, writer, path = threading.Event(), BackgroundWriter(), tmp_path / LAST

    def slow_write(frozen, extra):
        assert release.wait(60)
        save_checkpoint(path, frozen, **extra)

    writer.save(slow_write, model, {"step": torch.tensor(7), "args": {"seed": 0}})
    assert writer.pending and not path.exists()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(1.0)
    release.set()
    writer.wait()
    saved = read_checkpoint(path)
    assert saved["step"] == 7 and saved["model_config"] == model.config
    assert all(torch.equal(saved["model"][k], before[k]) for k in before)
    assert not list(tmp_path.glob(".*.tmp-*"))


def test_writes_keep_their_order_and_a_failure_reaches_the_training_thread(tmp_path):
    writer, done = BackgroundWriter(), []
    writer.then(lambda: (time.sleep(0.2), done.append("first")))
    writer.then(done.append, "second")  # queued behind, without waiting
    writer.wait()
    assert done == ["first", "second"]

    def full_disk():
        raise OSError(28, "could not save checkpoint-last.pth: the disk is full")

    writer.then(full_disk)
    writer.then(done.append, "link")  # not linked: the file it names was not written
    with pytest.raises(OSError, match="the disk is full"):
        writer.wait()
    assert done == ["first", "second"]
    writer.wait()  # raised once; the writer goes on
    writer.save(lambda frozen, extra: done.append(extra["step"]), torch.nn.Linear(2, 2), {"step": 1})
    writer.wait()
    assert done[-1] == 1


def test_a_new_save_waits_for_the_write_in_progress(tmp_path):
    """The snapshot reuses the previous one's buffers: it must not overwrite them while they are being written."""
    model, writer, seen = torch.nn.Linear(2, 2), BackgroundWriter(), []
    release = threading.Event()

    def first(frozen, extra):
        assert release.wait(60)
        seen.append(frozen.state_dict()["weight"].clone())

    writer.save(first, model, {})
    expected = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1)
    second = threading.Thread(
        target=writer.save, args=(lambda f, e: seen.append(f.state_dict()["weight"].clone()), model, {})
    )
    second.start()
    time.sleep(0.2)
    assert second.is_alive()  # blocked behind the first write
    release.set()
    second.join(60)
    writer.wait()
    assert torch.equal(seen[0], expected) and torch.equal(seen[1], model.weight.detach())


def test_the_stall_measurement_runs(tmp_path):
    result = async_checkpoint.measure("mae_vit_tiny_patch8", tmp_path, rounds=1, alone_seconds=0.1)
    assert {"sync_s", "blocked_s", "blocked_first_s", "write_s", "loop_alone", "loop_during_write"} <= set(
        result
    )
    assert len(result["sync_s"]) == len(result["blocked_s"]) == 1 and result["state_gb"] > 0


def test_save_minutes_is_checked_when_parsed():
    parser = pretrain.get_args_parser()
    assert parser.parse_args(["--save_minutes", "30"]).save_minutes == 30
    for bad in ("0", "-1", "nan"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--save_minutes", bad])


def count_writes(monkeypatch):
    written, real = [], engine.save_checkpoint

    def counted(path, model, **extra):
        written.append((extra["step"], extra["epoch"], extra["step_in_epoch"]))
        return real(path, model, **extra)

    monkeypatch.setattr(engine, "save_checkpoint", counted)
    return written


@pytest.mark.integration
def test_save_minutes_replaces_the_epoch_end_saves(tmp_path, no_launcher, monkeypatch):
    """4-step epochs (16 images, batch 4): every epoch end saves by default; with --save_minutes only the kept
    epochs, the end of the run, and the log steps and epoch ends at which the minutes have passed."""
    from PIL import Image

    data = tmp_path / "data"
    data.mkdir()
    for i in range(16):
        Image.new("RGB", (40, 40), (i * 15, 0, 0)).save(data / f"{i:02d}.png")
    flags = [*TINY, "--data_path", str(data), "--device", "cpu", "--batch_size", "4", "--epochs", "3",
             "--save_epochs", "2", "--save_every", "100"]  # fmt: skip
    written = count_writes(monkeypatch)
    pretrain_here([*flags, "--output_dir", str(tmp_path / "every_epoch")])
    assert written == [(4, 1, 0), (8, 2, 0), (12, 3, 0)]
    written.clear()
    pretrain_here([*flags, "--output_dir", str(tmp_path / "timed"), "--save_minutes", "600"])
    assert written == [(8, 2, 0), (12, 3, 0)]  # the kept epoch (checkpoint-1.pth) and the end only
    assert read_checkpoint(tmp_path / "timed" / "checkpoint-1.pth")["step"] == 8
    written.clear()
    monkeypatch.setattr(engine.Checkpointer, "due", lambda self: self.minutes is not None)  # always due
    pretrain_here([*flags, "--output_dir", str(tmp_path / "often"), "--save_minutes", "1"])
    assert [step for step, _, _ in written] == list(range(1, 13))  # at every log step (--log_every 1)


# --------------------------------------------------------------------------- 5. data workers from the task's CPUs


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
    assert engine.default_workers(distributed.Context()) == workers


def test_one_visible_gpu_without_binding_is_refused_for_a_second_local_rank():
    """Two processes on a one-GPU machine (no CUDA_VISIBLE_DEVICES binding) must not both take cuda:0."""
    assert distributed.local_gpu(0, 1) == 0
    assert distributed.local_gpu(3, 1, visible="5") == 0  # bound by the cluster: its one GPU is cuda:0
    with pytest.raises(RuntimeError, match="local rank 1 but sees only 1 GPUs"):
        distributed.local_gpu(1, 1)


def test_seeding_a_sample_leaves_the_gpu_generators_alone(monkeypatch):
    """A sample's seed goes to the CPU generator only: torch.manual_seed would also reseed every GPU's generator
    (which fork_rng(devices=[]) does not put back), making the main process's drop-path masks depend on the data."""
    reseeded = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: reseeded.append(seed))
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda seed: reseeded.append(seed))
    dataset = mae.datasets.build_pretrain_dataset("builtin:shifted-digits", 32, 64, in_chans=1, seed=3)
    torch.manual_seed(5)
    reseeded.clear()
    before = torch.get_rng_state()
    first = dataset[7]
    # Nothing reseeded, the CPU's state put back, and each sample still its own seed's.
    assert reseeded == [] and torch.equal(torch.get_rng_state(), before)
    assert all(torch.equal(a, b) for a, b in zip(first, dataset[7]))


# --------------------------------------------------------------------------- 7. evaluation, TF32, the probe's scaler


def test_float32_on_a_gpu_multiplies_in_tf32():
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        engine.amp_dtype(SimpleNamespace(amp=None), torch.device("cpu"))
        engine.amp_dtype(SimpleNamespace(amp="bf16"), torch.device("cuda", 0))
        assert torch.get_float32_matmul_precision() == "highest"  # CPUs, and autocast on GPUs: untouched
        assert engine.amp_dtype(SimpleNamespace(amp="none"), torch.device("cuda", 0)) is None
        assert torch.backends.cuda.matmul.allow_tf32  # the legacy switch too, which torch.compile reads
        assert torch.get_float32_matmul_precision() == "high"  # and reading it still works (no API mix-up)
    finally:
        torch.set_float32_matmul_precision(before)


def test_evaluation_counts_on_the_host_and_pins_its_batches(monkeypatch):
    """No tensor is made on the device per batch (each one waited for the GPU), and batches come from pinned memory
    on GPUs, as in training; the statistics are those of the whole dataset."""
    from mae import classify

    torch.manual_seed(0)
    images, labels = torch.randn(37, 1, 32, 32), torch.randint(0, 10, (37,))
    model = mae.create_classifier("vit_mini_patch8", num_classes=10, img_size=32, in_chans=1)
    args = SimpleNamespace(batch_size=8, num_workers=0, pin_mem=True)
    made_on_device = []
    real_tensor = torch.tensor
    monkeypatch.setattr(torch, "tensor", lambda *a, **k: made_on_device.append(k) or real_tensor(*a, **k))
    data = torch.utils.data.TensorDataset(images, labels)
    stats = classify.evaluate(model, data, args, distributed.Context())
    assert [k for k in made_on_device if "device" in k] == []
    with torch.no_grad():
        logits = model.eval()(images)
    top5 = logits.topk(5, dim=1).indices == labels[:, None]
    assert stats["acc1"] == pytest.approx(100 * top5[:, 0].double().mean().item())
    assert stats["acc5"] == pytest.approx(100 * top5.any(1).double().mean().item())
    assert stats["loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item(), rel=1e-5)

    class Built(Exception):
        pass

    def record(*args, **kwargs):
        raise Built(kwargs["pin_memory"])

    monkeypatch.setattr(torch.utils.data, "DataLoader", record)
    for device, pinned in (("cuda", True), ("cpu", False)):
        with pytest.raises(Built) as built:
            classify.evaluate(model, [], args, distributed.Context(device=torch.device(device)))
        assert built.value.args == (pinned,)


def test_the_probe_head_trains_in_float32_under_autocast():
    torch.manual_seed(0)
    head, features = linprobe.probe_head(16, 3), torch.randn(8, 16)
    expected = head(features)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = head(features.bfloat16())
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, head(features.bfloat16().float()))  # the head itself computed in float32
    assert not torch.equal(got, expected)  # (the input was rounded to bf16 by the encoder, not by the head)


@pytest.mark.parametrize(("job", "scaled"), [(linprobe, False), (finetune, True)])
def test_fp16_uses_the_gradient_scaler_only_where_gradients_pass_through_fp16(
    job, scaled, tmp_path, monkeypatch
):
    """The probe head is all that trains, in float32: --amp fp16 needs no GradScaler there (its step would wait for
    the GPU every step: LARS has no fused AMP support); fine-tuning trains the whole fp16 network and keeps it."""
    made = []
    real = torch.amp.GradScaler
    monkeypatch.setattr(torch.amp, "GradScaler", lambda *a, **k: made.append(k["enabled"]) or real(*a, **k))
    small = ["--model", "vit_mini_patch8", "--input_size", "32", "--data_path", "builtin:digits", "--device", "cpu",
             "--num_workers", "0", "--batch_size", "16", "--max_steps", "1", "--amp", "fp16"]  # fmt: skip
    with pytest.warns(UserWarning, match="--amp fp16 on cpu"):
        job.main([*small, "--output_dir", str(tmp_path)])
    assert made == [scaled]


# --------------------------------------------------------------------------- 5. uint8 batches, normalised where they land


@pytest.mark.parametrize("data, channels", [("builtin", 3), ("builtin:digits", 1)])
def test_pretraining_batches_travel_as_uint8_and_are_normalised_bit_for_bit(data, channels):
    """Workers send uint8 (a quarter of float32's bytes); scaled and normalised on the training device, the images
    are exactly what ToDtype(scale=True) and Normalize in the workers gave before."""
    from torchvision.transforms import v2

    from mae.datasets import build_pretrain_dataset, collate_skipping_unreadable
    from mae.images import channel_stats

    dataset = build_pretrain_dataset(data, 32, 16, in_chans=channels, seed=1)
    batch = collate_skipping_unreadable([dataset[i] for i in range(6)])
    assert batch[0].dtype == torch.uint8 and batch[0].shape == (6, channels, 32, 32)
    images, noise = pretrain.batch_to_device(batch, torch.device("cpu"))
    in_workers = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(*channel_stats(channels))])
    assert images.dtype == torch.float32 and torch.equal(
        images, torch.stack([in_workers(x) for x in batch[0]])
    )
    assert torch.equal(noise, batch[1])


def test_the_shifted_digits_stay_float_and_pass_through():
    dataset = mae.datasets.build_pretrain_dataset("builtin:shifted-digits", 32, 64, in_chans=1)
    image, _ = dataset[0]
    assert image.dtype == torch.float32 and mae.images.to_model_input(image[None]) is not None
    assert torch.equal(mae.images.to_model_input(image[None]), image[None])


def test_workers_serve_every_epoch_and_samples_stay_fixed_by_seed_epoch_index(tmp_path):
    """Persistent workers (started once per run, not at every epoch) hold their own copy of the dataset: the epoch
    travels with each index, so two epochs with 2 workers give exactly the losses of the run without workers."""
    from test_pretrain import make_folder

    make_folder(tmp_path / "data", count=16, corrupt=False)
    started = tmp_path / "started"
    common = ["--model", "mae_vit_tiny_patch8", "--input_size", "32", "--data_path", str(tmp_path / "data"),
              "--device", "cpu", "--batch_size", "4", "--epochs", "2", "--warmup_epochs", "1", "--log_every", "1"]  # fmt: skip
    code = f"""
import sys
from mae import engine, pretrain
real = engine.ignore_stop_signals
def counted(worker_id):
    with open({str(started)!r}, "a") as f:
        f.write(f"{{worker_id}}\\n")
    real(worker_id)
engine.ignore_stop_signals = counted
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
