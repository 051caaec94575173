"""The pretraining engine: schedules, data, checkpoints, exact resume after kill -9, torchrun with gloo."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mae
import mae.device_decode
from mae import engine, pretrain
from mae.datasets import build_pretrain_dataset, collate_skipping_unreadable

ROOT = Path(__file__).resolve().parent.parent


def test_learning_rate_schedule():
    args = Namespace(lr=1.0, min_lr=0.1, warmup_epochs=2, epochs=10)
    assert engine.learning_rate(0, args) == 0
    assert engine.learning_rate(1, args) == pytest.approx(0.5)  # linear warm-up
    assert engine.learning_rate(2, args) == pytest.approx(1.0)
    assert engine.learning_rate(6, args) == pytest.approx(0.55)  # half-way down the cosine
    assert engine.learning_rate(10, args) == pytest.approx(0.1)


def test_no_weight_decay_on_biases_norms_and_embeddings():
    model = mae.mae_vit_tiny_patch8()
    no_decay, decay = pretrain.param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    assert no_decay["weight_decay"] == 0 and decay["weight_decay"] == 0.05
    skipped = {names[id(p)] for p in no_decay["params"]}
    assert {"cls_token", "mask_token", "blocks.0.norm1.weight", "blocks.0.attn.qkv.bias"} <= skipped
    assert {names[id(p)] for p in decay["params"]} >= {"blocks.0.attn.qkv.weight", "decoder_pred.weight"}
    assert "pos_embed" not in skipped | {
        names[id(p)] for p in decay["params"]
    }  # frozen: not optimised at all


def make_folder(root, count=22, corrupt=True):
    """A folder of small real crops (class sub-folders), plus one truncated JPEG."""
    from mae.images import SAMPLE_IMAGES, sample_photo

    rng = np.random.default_rng(0)
    for i in range(count):
        photo = sample_photo(SAMPLE_IMAGES[i % len(SAMPLE_IMAGES)])
        top, left = rng.integers(0, 200, size=2)
        folder = root / "train" / f"class{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo[top : top + 96, left : left + 96]).save(folder / f"{i}.png")
    if corrupt:
        good = root / "train" / "class0" / "0.png"
        (root / "train" / "class1" / "broken.jpg").write_bytes(good.read_bytes()[:200])
    return root


def test_datasets_and_errors(tmp_path):
    folder = make_folder(tmp_path / "data")
    dataset = build_pretrain_dataset(str(folder), 32, 16, seed=0)
    assert len(dataset) == 23
    image, noise = dataset[0]
    assert image.shape == (3, 32, 32) and noise.shape == (16,)
    assert image.dtype == torch.uint8  # normalised where the batch lands (test_uint8_batches_...)
    torch.manual_seed(5)
    before = torch.rand(3)
    torch.manual_seed(5)
    again = dataset[0]  # deterministic per (seed, epoch, index), and the global RNG is left alone
    assert torch.equal(again[0], image) and torch.equal(torch.rand(3), before)
    dataset.set_epoch(1)
    assert not torch.equal(dataset[0][0], image)
    broken = next(i for i, f in enumerate(dataset.images.files) if f.name == "broken.jpg")
    with pytest.warns(UserWarning, match="skipping unreadable image"):
        assert dataset[broken] is None
    assert collate_skipping_unreadable([None, dataset[1]])[0].shape == (1, 3, 32, 32)

    digits = build_pretrain_dataset("builtin:digits", 16, 4, in_chans=1)
    assert digits[0][0].shape == (1, 16, 16) and len(digits) == 1437  # the training split only
    with pytest.raises(FileNotFoundError, match="data folder not found: .*missing"):
        build_pretrain_dataset(str(tmp_path / "missing"), 32, 16)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images in .*empty"):
        build_pretrain_dataset(str(tmp_path / "empty"), 32, 16)
    with pytest.raises(ValueError, match="unknown built-in dataset"):
        build_pretrain_dataset("builtin:cifar", 32, 16)


def command(data, out, *extra):
    return [
        sys.executable, "-m", "mae.pretrain", "--model", "mae_vit_tiny_patch8", "--input_size", "32",
        "--data_path", str(data), "--output_dir", str(out), "--device", "cpu", "--num_workers", "0",
        "--batch_size", "8", "--epochs", "50", "--warmup_epochs", "1", "--blr", "1e-3", "--log_every", "1",
        *extra,
    ]  # fmt: skip


def run(args, **kwargs):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=ROOT, env=env, **kwargs)


def run_here(args):
    """The same command in this process (no interpreter start-up), on one thread like the subprocesses."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return pretrain.main(pretrain.get_args_parser().parse_args(args[3:]))  # drop "python -m mae.pretrain"
    finally:
        torch.set_num_threads(threads)


def losses(out):
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return [(line["step"], line["loss"]) for line in lines if line["kind"] == "train"]


@pytest.mark.integration
def test_kill_9_and_resume_reproduces_the_uninterrupted_run(tmp_path):
    data = make_folder(tmp_path / "data")
    steps = ["--max_steps", "14", "--save_every", "3"]
    straight = tmp_path / "straight"
    run_here(command(data, straight, *steps))
    reference = losses(straight)
    assert [s for s, _ in reference] == list(range(1, 15))
    epochs = [
        json.loads(line) for line in (straight / "log.jsonl").read_text().splitlines() if '"epoch"' in line
    ]
    assert any(
        e["kind"] == "epoch" and e["skipped_images"] > 0 for e in epochs
    )  # the broken file was counted

    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        command(data, killed, *steps), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if (killed / "log.jsonl").exists() and len(losses(killed)) >= 8:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (killed / "checkpoint-last.pth").exists()
    interrupted_at = torch.load(killed / "checkpoint-last.pth", weights_only=True)["step"]
    assert 0 < interrupted_at < 14
    result = run(command(data, killed, *steps))  # same command: resumes from checkpoint-last.pth by itself
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resuming at epoch" in result.stdout
    assert losses(killed) == reference  # every step's loss, bit for bit


@pytest.mark.integration
def test_non_finite_loss_stops_with_the_step_and_keeps_the_checkpoint(tmp_path):
    data = make_folder(tmp_path / "data", count=16, corrupt=False)
    out = tmp_path / "run"
    with pytest.raises(FloatingPointError, match=r"loss is .* at step \d+ .*The last good checkpoint"):
        run_here(
            command(
                data, out, "--lr", "1e30", "--warmup_epochs", "0", "--save_every", "1", "--max_steps", "20"
            )
        )
    checkpoint = mae.read_checkpoint(out / "checkpoint-last.pth")
    assert all(torch.isfinite(v).all() for v in checkpoint["model"].values())


@pytest.mark.integration
@pytest.mark.skipif(
    shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None, reason="torchrun missing"
)
def test_torchrun_two_processes_equal_one_process(tmp_path):
    data = make_folder(tmp_path / "data", count=32, corrupt=False)
    steps = ["--max_steps", "3", "--save_every", "100"]
    single = tmp_path / "single"
    run_here(command(data, single, *steps))

    double = tmp_path / "double"
    torchrun = str(Path(sys.executable).parent / "torchrun")
    two = command(data, double, *steps)[2:]  # drop "python -m"
    two[two.index("--batch_size") + 1] = "4"  # 2 processes x 4 = the same effective batch of 8
    result = run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", *two])
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
    from mae import submit

    args = submit.get_args_parser().parse_args(
        ["--model", "mae_vit_tiny_patch8", "--input_size", "32", "--data_path", "builtin:digits", "--device", "cpu",
         "--num_workers", "0", "--batch_size", "8", "--max_steps", "2", "--output_dir", str(tmp_path / "run")]
    )  # fmt: skip
    submit_in_debug_executor(submit.Trainer(submit.engine_args(args)), tmp_path / "jobs", monkeypatch, 29533)
    checkpoint = mae.read_checkpoint(tmp_path / "run" / "checkpoint-last.pth")
    assert checkpoint["step"] == 2 and checkpoint["model_config"]["in_chans"] == 1


@pytest.mark.integration
def test_submitit_runs_fine_tuning_with_its_preset(tmp_path, monkeypatch):
    from mae import submit

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


def test_digits_are_scikit_learns():
    from sklearn.datasets import load_digits as sklearn_digits

    from mae.datasets import Digits, load_digits

    images, labels = load_digits()
    reference = sklearn_digits()
    assert np.array_equal(images, reference.images) and np.array_equal(labels, reference.target)
    train, val = Digits("train"), Digits("val")
    assert len(train) == 1437 and len(val) == 360 and sorted(set(val.labels)) == list(range(10))


def make_jpegs(root, count=12):
    from mae.images import SAMPLE_IMAGES, sample_photo

    rng = np.random.default_rng(1)
    (root / "train").mkdir(parents=True)
    for i in range(count):
        photo = sample_photo(SAMPLE_IMAGES[i % len(SAMPLE_IMAGES)])
        top, left = rng.integers(0, 150, size=2)
        Image.fromarray(photo[top : top + 120, left : left + 100]).save(
            root / "train" / f"{i}.jpg", quality=90
        )
    Image.fromarray(photo[:50, :60]).save(root / "train" / "other.png")  # not a JPEG: decoded on the CPU
    Image.fromarray(photo[:40, :40]).save(root / "train" / "other.bmp")
    (root / "train" / "broken.jpg").write_bytes((root / "train" / "0.jpg").read_bytes()[:300])


@pytest.mark.integration
def test_device_decoding_matches_the_pil_pipeline_and_trains(tmp_path):
    """--gpu_decode (here on the CPU device): same crops as PIL decoding up to resampling, skips bad files, trains."""
    from torchvision.transforms import v2

    from mae.datasets import ImageFiles
    from mae.device_decode import EncodedMaskedImages, collate_encoded, decode_batch

    make_jpegs(tmp_path / "data")
    files = ImageFiles(tmp_path / "data").files
    dataset = EncodedMaskedImages(files, num_patches=16, seed=0)
    with pytest.warns(UserWarning, match="skipping unreadable image"):  # the truncated file
        imgs, noise = decode_batch(
            collate_encoded([dataset[i] for i in range(len(files))]), 32, torch.device("cpu")
        )
    assert imgs.shape == (len(files) - 1, 3, 32, 32) and noise.shape == (
        len(files) - 1,
        16,
    )  # broken.jpg skipped

    garbage = torch.frombuffer(bytearray(b"\xff\xd8" + bytes(range(200))), dtype=torch.uint8)
    good, _, _ = dataset[0]
    with pytest.warns(
        UserWarning, match="skipping an undecodable image"
    ):  # fails the batch, then PIL: skipped
        decoded = mae.device_decode._decode_all([good, garbage], torch.device("cpu"))
    assert decoded[0].shape[0] == 3 and decoded[1] is None

    index = next(i for i, f in enumerate(files) if f.name == "1.jpg")
    _, box, _ = dataset[index]
    top, left, h, w, flip = box.tolist()
    by_device, _ = decode_batch(collate_encoded([dataset[index]]), 32, torch.device("cpu"))
    with Image.open(files[index]) as image:
        crop = v2.functional.resized_crop(v2.functional.pil_to_tensor(image.convert("RGB")), top, left, h, w, [32, 32],
                                          interpolation=v2.InterpolationMode.BICUBIC, antialias=True)  # fmt: skip
    reference = mae.images.normalize((crop.flip(-1) if flip else crop).float().div(255).unsqueeze(0))
    assert (by_device - reference).abs().mean() < 0.05  # two JPEG decoders and resamplers, the same crop

    out = tmp_path / "run"
    run_here(command(tmp_path / "data", out, "--gpu_decode", "--max_steps", "2", "--epochs", "1"))
    assert (
        mae.read_checkpoint(out / "checkpoint-last.pth")["step"] == 1
    )  # 13 files / batch 8: one step per epoch


def test_each_logged_loss_is_the_mean_of_its_own_micro_batches(tmp_path):
    """--accum_iter 4 on 14 micro-batches per epoch (1,437 digits, 100 a batch): the 2 left over are skipped
    (not computed), and every logged loss, across the epoch boundary too, is the mean of its step's micro-batch
    losses, recomputed here by hand. --lr 0 keeps the weights at their initial values."""
    argv = ["--model", "mae_vit_tiny_patch8", "--input_size", "32", "--data_path", "builtin:digits",
            "--batch_size", "100", "--accum_iter", "4", "--lr", "0", "--warmup_epochs", "0", "--epochs", "2",
            "--max_steps", "5", "--log_every", "1", "--device", "cpu", "--num_workers", "0",
            "--output_dir", str(tmp_path)]  # fmt: skip
    args = pretrain.get_args_parser().parse_args(argv)
    computed = []
    real_forward = mae.impl.components().MAE.forward

    def counting_forward(self, *a, **k):
        computed.append(1)
        return real_forward(self, *a, **k)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mae.impl.components().MAE, "forward", counting_forward)
        model = pretrain.main(args)
    assert len(computed) == 5 * 4 + 1  # 20 micro-batches trained, and the first epoch's reconstruction figure

    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    logged = [r["loss"] for r in records if r["kind"] == "train"]
    dataset = build_pretrain_dataset("builtin:digits", 32, model.patch_embed.num_patches, 1, args.seed)
    sampler = engine.ResumableSampler(dataset, 1, 0, args.seed)
    by_hand = []
    model.eval()  # no dropout in MAE pretraining: train and eval compute the same loss
    with torch.no_grad():
        for epoch, steps in ((0, 3), (1, 2)):
            dataset.set_epoch(epoch)
            sampler.set_epoch(epoch)
            order = list(sampler)
            for step in range(steps):
                micro = []
                for m in range(4):
                    first = (step * 4 + m) * 100
                    imgs, noise = pretrain.batch_to_device(
                        collate_skipping_unreadable([dataset[i] for i in order[first : first + 100]]), "cpu"
                    )
                    micro.append(model(imgs, mask_ratio=0.75, noise=noise)[0].item())
                by_hand.append(sum(micro) / 4)
    assert logged == pytest.approx(by_hand, rel=1e-5)
