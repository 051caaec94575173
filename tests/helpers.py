"""What the tests share (none of it is a test): the checkout's paths, tiny training runs in this process or in
others, image folders, the golden vectors' model, comparisons of tensors, optional packages, the learner's
stubs.

Imported as `helpers` (pyproject.toml puts tests/ on pytest's sys.path). The package is imported inside the
functions, so that a test module that uses none of a helper's imports does not fail with them.
"""

import contextlib
import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent  # the checkout
FIXTURES = Path(__file__).resolve().parent / "fixtures"  # the golden vectors and the official shapes
LAST = "checkpoint-last.pth"
ATOL = 1e-5  # float32 rounding: two implementations add and multiply in different orders

# mae.pretrain's flags for a tiny CPU run (see flags()).
TINY = ["--model", "mae_vit_tiny_patch8", "--input_size", "32", "--device", "cpu", "--num_workers", "0",
        "--batch_size", "8", "--warmup_epochs", "1", "--log_every", "1"]  # fmt: skip
# The same on the built-in digits, with the device left to --device auto (its default).
TINY_DIGITS = ["--model", "mae_vit_tiny_patch8", "--input_size", "32", "--data_path", "builtin:digits", "--num_workers",
               "0", "--batch_size", "8", "--warmup_epochs", "1", "--log_every", "1"]  # fmt: skip
# mae.finetune's and mae.linprobe's flags for a tiny classifier on the built-in digits.
CLASSIFIER = ["--model", "vit_mini_patch8", "--input_size", "32", "--data_path", "builtin:digits", "--device", "cpu",
              "--num_workers", "0", "--batch_size", "16", "--log_every", "1"]  # fmt: skip
SMALL_CLASSIFIER = ["--model", "vit_mini_patch8", "--input_size", "32", "--data_path", "builtin:digits", "--device",
                    "cpu", "--num_workers", "0", "--batch_size", "16", "--warmup_epochs", "1", "--log_every", "1"]  # fmt: skip

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


# --------------------------------------------------------------------------- training runs


def flags(out, *extra, data="builtin:digits"):
    """mae.pretrain's flags for a tiny CPU run into `out` (later flags win over earlier ones)."""
    return [*TINY, "--data_path", str(data), "--output_dir", str(out), *extra]


def pretrain_here(argv, **engine):
    """mae.pretrain in this process, on one thread like the subprocesses. `engine`: the engine's collaborators
    (write=, clock=; see mae.engine.loop.fit), passed on by mae.pretrain.main."""
    from mae import pretrain

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return pretrain.main(pretrain.get_args_parser().parse_args(argv), **engine)
    finally:
        torch.set_num_threads(threads)


def command(argv, module="mae.pretrain"):
    return [sys.executable, "-m", module, *argv]


def run(argv):
    """mae.pretrain with `argv`, in another process; waits for it."""
    return subprocess.run(command(argv), capture_output=True, text=True, timeout=600, cwd=ROOT, env=ENV)


def spawn(argv, **kwargs):
    """mae.pretrain with `argv`, in another process; returns while it runs."""
    return subprocess.Popen(
        command(argv), cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs
    )


def pretrain_command(data, out, *extra):
    """A whole `python -m mae.pretrain ...` command: a tiny model on `data`, 50 epochs unless `extra` stops it."""
    return [
        sys.executable, "-m", "mae.pretrain", "--model", "mae_vit_tiny_patch8", "--input_size", "32",
        "--data_path", str(data), "--output_dir", str(out), "--device", "cpu", "--num_workers", "0",
        "--batch_size", "8", "--epochs", "50", "--warmup_epochs", "1", "--blr", "1e-3", "--log_every", "1",
        *extra,
    ]  # fmt: skip


def run_command(args, **kwargs):
    """A whole command (pretrain_command, torchrun ...) in another process, on one thread; waits for it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=ROOT, env=env, **kwargs)


def run_here(args):
    """The same command in this process (no interpreter start-up), on one thread like the subprocesses."""
    return pretrain_here(args[3:])  # drop "python -m mae.pretrain"


# --------------------------------------------------------------------------- what a run wrote


def records(out, kind):
    """The log.jsonl records of a kind; a line being written (not whole yet) is left out."""
    path = Path(out) / "log.jsonl"
    found = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("kind") == kind:
            found.append(record)
    return found


def steps(out):
    return [r["step"] for r in records(out, "train")]


def losses(out):
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return [(line["step"], line["loss"]) for line in lines if line["kind"] == "train"]


def wait_until(condition, process, seconds=300):
    deadline = time.time() + seconds
    while not condition():
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


# --------------------------------------------------------------------------- image folders


def image_folder(root, good, bad=0):
    """`bad` unreadable files named to sort first (truncated PNGs, text with a .png name), then `good` small PNGs."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(good):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(root / f"img_{i:03d}.png")
    for i in range(bad):
        if i % 2 and good:
            (root / f"000_broken_{i}.png").write_bytes((root / "img_000.png").read_bytes()[:100])
        else:
            (root / f"000_broken_{i}.png").write_text("not an image")
    return root


def make_folder(root, count=22, corrupt=True):
    """A folder of small real crops (class sub-folders), plus one truncated JPEG."""
    from mae.data.images import SAMPLE_IMAGES, sample_photo

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


def make_jpegs(root, count=12):
    """JPEG crops of the sample photos in root/train, with a PNG, a BMP and a truncated JPEG among them."""
    from mae.data.images import SAMPLE_IMAGES, sample_photo

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


# --------------------------------------------------------------------------- the golden vectors, tensors compared


def golden_model(case, fused_attn=True):
    """The reference MAE with the weights of a golden case (tests/fixtures/official_mae_tiny.pt), in eval mode."""
    import mae

    model = mae.MAE(**case["config"])
    model.load_state_dict(case["state_dict"], strict=True)
    for block in [*model.blocks, *model.decoder_blocks]:
        block.attn.fused_attn = fused_attn
    return model.eval()


def golden_run(model, case):
    """(loss, pred, mask) of `model` on a golden case's images and noise, in eval mode."""
    with torch.no_grad():
        return model.eval()(case["imgs"], mask_ratio=case["mask_ratio"], noise=case["noise"])


def assert_close(name, got, want):
    assert got.shape == want.shape, f"{name}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    diff = (got.double() - want.double()).abs().max().item()
    assert diff <= ATOL, f"{name}: max abs difference {diff:.2e} > {ATOL}"


def max_diff(a, b):
    return (a.double() - b.double()).abs().max().item()


def assert_bit_identical(state, expected):
    assert list(state) == list(expected)
    for key, value in expected.items():
        assert state[key].dtype == value.dtype, key
        assert torch.equal(state[key], value), key


def randomize(model, seed=0):
    """Perturb every parameter (LayerNorm scales and biases included), so that a swapped name cannot hide."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.02 * torch.randn(parameter.shape, generator=generator))
    return model


# --------------------------------------------------------------------------- optional packages, the learner's code


def optional(name):
    """An optional dependency (the [hf] extra): imported, or the calling test (module) skipped without it; under CI,
    which installs every extra, a missing one is a failure, not a skip."""
    if os.environ.get("CI"):
        return importlib.import_module(name)
    return pytest.importorskip(name)


@contextlib.contextmanager
def learners_stub(step):
    """The learner's `exercises` package as the course gives it, with `step` their untouched stub (the reference
    standing in for the other steps, as in that step's notebook); the implementation selected before is selected
    again afterwards (None: from $MAE_IMPL, as on first use), so that the tests after this one build the same."""
    from mae import impl

    before = impl.active()
    try:
        yield impl.select("exercises", own_step=step).package
    finally:
        impl.select(before)
