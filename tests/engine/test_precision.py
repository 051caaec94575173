"""Number formats (mae.engine.precision): bf16 only where the GPU computes it natively, fp16 with a gradient
scaler only where gradients pass through fp16, TF32 for float32 on GPUs, one autocast for every forward pass;
bf16 and fp16 runs on CPUs. GPUs are faked with monkeypatched `torch.cuda` functions.
"""

import inspect
import math
from types import SimpleNamespace

import pytest
import torch
from helpers import LAST, ROOT, flags, pretrain_here, records, steps

from mae import finetune, linprobe
from mae.checkpoint import read_checkpoint
from mae.engine import precision


def test_bf16_only_where_the_gpu_computes_it_natively(monkeypatch):
    assert "including_emulation" in inspect.signature(torch.cuda.is_bf16_supported).parameters
    args = SimpleNamespace(amp=None)

    def gpu(native):  # is_bf16_supported as on that GPU: True with emulation everywhere from Volta on
        return lambda including_emulation=True: native or including_emulation

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", gpu(native=False))  # V100, T4
    assert (
        precision.amp_dtype(args, torch.device("cuda", 0)) == torch.float16
    )  # with the GradScaler (mae.engine.loop.start)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", gpu(native=True))  # A100, H100
    assert precision.amp_dtype(args, torch.device("cuda", 0)) == torch.bfloat16
    assert precision.amp_dtype(args, torch.device("cpu")) is None
    assert precision.amp_dtype(SimpleNamespace(amp="none"), torch.device("cuda")) is None  # a choice is kept


def test_one_autocast_for_every_forward_pass():
    package = ROOT / "mae"
    sources = {p.relative_to(package).as_posix(): p.read_text() for p in package.rglob("*.py")}
    assert [name for name, text in sources.items() if "torch.autocast(" in text] == ["engine/precision.py"]
    assert sources["engine/precision.py"].count("torch.autocast(") == 1
    with precision.autocast(torch.device("cpu"), torch.bfloat16):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with precision.autocast("cpu", None):
        assert not torch.is_autocast_enabled("cpu")
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.float32


def test_float32_on_a_gpu_multiplies_in_tf32():
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        precision.amp_dtype(SimpleNamespace(amp=None), torch.device("cpu"))
        precision.amp_dtype(SimpleNamespace(amp="bf16"), torch.device("cuda", 0))
        assert torch.get_float32_matmul_precision() == "highest"  # CPUs, and autocast on GPUs: untouched
        assert precision.amp_dtype(SimpleNamespace(amp="none"), torch.device("cuda", 0)) is None
        assert torch.backends.cuda.matmul.allow_tf32  # the legacy switch too, which torch.compile reads
        assert torch.get_float32_matmul_precision() == "high"  # and reading it still works (no API mix-up)
    finally:
        torch.set_float32_matmul_precision(before)


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


@pytest.mark.integration
def test_bf16_and_fp16_autocast_run_on_cpus(tmp_path):
    """The autocast and GradScaler paths, tested without a GPU: finite, and close to float32."""
    losses = {}
    for amp in ("none", "bf16", "fp16"):
        out = tmp_path / amp
        if amp == "none":
            pretrain_here(flags(out, "--max_steps", "3", "--amp", amp))
        else:
            with pytest.warns(UserWarning, match=f"--amp {amp} on cpu: it runs, but usually more slowly"):
                pretrain_here(flags(out, "--max_steps", "3", "--amp", amp))
        losses[amp] = [r["loss"] for r in records(out, "train")]
    for amp in ("bf16", "fp16"):
        assert all(math.isfinite(x) for x in losses[amp])
        assert losses[amp] == pytest.approx(losses["none"], rel=5e-3)
    scaler = read_checkpoint(tmp_path / "fp16" / LAST)["scaler"]
    assert scaler["scale"] > 0  # the GradScaler's state, saved for the resume
    with pytest.warns(UserWarning):
        pretrain_here(flags(tmp_path / "fp16", "--max_steps", "4", "--amp", "fp16"))
    assert steps(tmp_path / "fp16") == [1, 2, 3, 4]
