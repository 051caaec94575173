"""What only a GPU can show (skipped without one; benchmarks/gpu_first_look.sh runs them on the first GPU
lent).

Everything else about the CUDA paths is tested on CPUs with faked devices (tests/engine/: test_distributed.py,
test_precision.py, test_checkpointer.py); these run the real thing: the official function in float32 and bf16,
a training run with its defaults (bf16, fused AdamW, pinned batches, the background checkpoint's copy from the
GPU) and its resume, nvJPEG decoding, and evaluation.
"""

import json
from collections import OrderedDict

import pytest
import torch
from helpers import assert_close, flags, golden_model, make_jpegs, pretrain_here

import mae
from mae import classify
from mae.engine import distributed
from mae.engine.background_writer import HostBuffers
from mae.engine.precision import amp_dtype
from mae.engine.step import FUSED_ADAMW

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
GPU = torch.device("cuda", 0)


@pytest.fixture
def ieee_float32():
    """Full-precision float32 matrix products (the engine turns TF32 on for --amp none), put back afterwards."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision(before)


@pytest.mark.parametrize("index", [0, 1, 2])
def test_the_official_function_on_the_gpu(golden, index, ieee_float32):
    case = golden["cases"][index]
    model = golden_model(case).to(GPU)
    on_gpu = {k: v.to(GPU) for k, v in case.items() if isinstance(v, torch.Tensor)}
    with torch.no_grad():
        loss, pred, mask = model(on_gpu["imgs"], mask_ratio=case["mask_ratio"], noise=on_gpu["noise"])
        assert torch.equal(mask.cpu(), case["mask"])
        assert_close("pred", pred.cpu(), case["pred"])
        assert_close("loss", loss.cpu(), case["loss"])
        with torch.autocast("cuda", dtype=torch.bfloat16):  # what training runs: close, not equal
            loss_bf16, _, _ = model(on_gpu["imgs"], mask_ratio=case["mask_ratio"], noise=on_gpu["noise"])
    assert (
        loss_bf16.dtype == torch.float32 and abs(loss_bf16.item() - case["loss"].item()) < 0.02 * case["loss"]
    )


def test_this_gpu_gets_the_fast_defaults():
    capability = torch.cuda.get_device_capability()
    expected = torch.bfloat16 if capability >= (8, 0) else torch.float16
    assert amp_dtype(type("Args", (), {"amp": None}), GPU) == expected
    assert FUSED_ADAMW.get("cuda")


def test_pretraining_on_the_gpu_runs_saves_and_resumes(tmp_path, capsys):
    """Defaults (bf16 or fp16, fused AdamW, uint8 batches pinned by 2 persistent workers, the background save
    copying from the GPU), then the same run stopped after 2 steps and resumed: the same losses to bf16's rounding."""
    gpu = ["--device", "cuda", "--epochs", "1", "--save_every", "2", "--num_workers", "2"]
    pretrain_here(flags(tmp_path / "whole", *gpu, "--max_steps", "4"))
    assert "device cuda:0" in capsys.readouterr().out
    pretrain_here(flags(tmp_path / "parts", *gpu, "--max_steps", "2"))
    pretrain_here(flags(tmp_path / "parts", *gpu, "--max_steps", "4"))
    logs = {}
    for run in ("whole", "parts"):
        lines = [json.loads(line) for line in (tmp_path / run / "log.jsonl").read_text().splitlines()]
        logs[run] = [(r["step"], r["loss"]) for r in lines if r["kind"] == "train"]
    assert [s for s, _ in logs["whole"]] == [s for s, _ in logs["parts"]]
    for (_, whole), (_, parts) in zip(logs["whole"], logs["parts"]):
        assert parts == pytest.approx(whole, rel=1e-2)
    saved = mae.read_checkpoint(tmp_path / "whole" / "checkpoint-last.pth", map_location=None)  # as written
    assert all(t.device.type == "cpu" for t in saved["model"].values())  # from the pinned host buffers


def test_float32_with_tf32_compiles_and_trains(tmp_path):
    """--amp none on a GPU turns TF32 on; torch.compile's Inductor reads the legacy switch, which must stay readable."""
    pretrain_here(flags(tmp_path, "--device", "cuda", "--amp", "none", "--compile", "--max_steps", "2"))
    assert mae.read_checkpoint(tmp_path / "checkpoint-last.pth")["step"] == 2


def test_a_snapshot_from_the_gpu_is_the_state_before_the_next_step():
    """The copy into pinned memory is queued behind the step on the GPU's stream; the next step, queued after it,
    must not reach the copy (the writer thread waits on the event, not the training thread)."""
    weights = torch.randn(4096, 4096, device=GPU)
    state = OrderedDict(w=weights)
    expected = weights.cpu()
    buffers = HostBuffers()
    copy, ready = buffers.snapshot({"model": state})
    weights.mul_(2).add_(1)  # the next optimizer step, queued right behind the copy
    ready()
    assert copy["model"]["w"].is_pinned() and torch.equal(copy["model"]["w"], expected)


def test_nvjpeg_decoding_matches_the_cpu_path(tmp_path):
    from mae.data.device_decode import EncodedMaskedImages, collate_encoded, decode_batch
    from mae.data.pretraining import ImageFiles

    make_jpegs(tmp_path / "data")
    files = [f for f in ImageFiles(tmp_path / "data").files if f.name != "broken.jpg"]
    dataset = EncodedMaskedImages(files, num_patches=16, seed=0)
    batch = collate_encoded([dataset[i] for i in range(len(files))])
    on_gpu, noise = decode_batch(batch, 32, GPU)
    on_cpu, _ = decode_batch(batch, 32, torch.device("cpu"))
    assert on_gpu.device.type == "cuda" and noise.device.type == "cuda"
    assert (on_gpu.cpu() - on_cpu).abs().mean() < 0.05  # two JPEG decoders and resamplers, the same crops


def test_evaluation_on_the_gpu_matches_the_cpu(ieee_float32):
    torch.manual_seed(0)
    images, labels = torch.randn(37, 1, 32, 32), torch.randint(0, 10, (37,))
    data = torch.utils.data.TensorDataset(images, labels)
    model = mae.create_classifier("vit_mini_patch8", num_classes=10, img_size=32, in_chans=1)
    args = type("Args", (), {"batch_size": 8, "num_workers": 2, "pin_mem": True})
    on_cpu = classify.evaluate(model, data, args, distributed.Context())
    on_gpu = classify.evaluate(model.to(GPU), data, args, distributed.Context(device=GPU))
    assert on_gpu["acc1"] == on_cpu["acc1"] and on_gpu["loss"] == pytest.approx(on_cpu["loss"], rel=1e-4)
