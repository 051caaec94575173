"""Mixed precision: which autocast dtype a device gets (bf16 where native, fp16 with a gradient scaler on older
GPUs, float32 on CPUs) and the one autocast context of every forward pass. Imports torch only: evaluation code
uses it without the training loop."""

import warnings

import torch


def default_amp(device):
    """bf16 on GPUs that compute it natively (compute capability 8.0 and later, ROCm), fp16 with the GradScaler
    on older ones, none on CPUs. Not torch.cuda.is_bf16_supported()'s default: it also says True where bf16
    is only emulated (V100, T4), which has no bf16 tensor cores and sends attention to the slow math kernel."""
    if device.type != "cuda":
        return "none"
    return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"


def amp_dtype(args, device):
    """The autocast dtype (None for float32). bf16 and fp16 also run on CPUs, which is how CI tests the
    autocast and GradScaler code, but more slowly than float32 there: said once.

    float32 on a GPU multiplies matrices in TF32 on the tensor cores (Ampere and later; cuDNN's convolutions already
    do by default), as PyTorch did by default when MAE was published (before 1.12): the full-precision matmul is
    several times slower and changes no result that matters here."""
    choice = args.amp or default_amp(device)
    if choice == "none" and device.type == "cuda":
        # The one setting that sets both of PyTorch's switches (the legacy allow_tf32, which torch.compile's
        # Inductor reads, and the newer fp32_precision): setting only the newer one makes reading the legacy fail.
        torch.set_float32_matmul_precision("high")
    if choice != "none" and device.type != "cuda":
        warnings.warn(
            f"--amp {choice} on {device.type}: it runs, but usually more slowly than float32 there; it is "
            f"meant for GPUs (--amp none for the fastest {device.type} run)",
            stacklevel=2,
        )
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}[choice]


def autocast(device, dtype):
    """The autocast context of every forward pass (training, evaluation): `dtype` from amp_dtype, None for
    float32 (a disabled autocast). `device` is a torch.device or its type ("cuda", "cpu")."""
    device_type = getattr(device, "type", device)
    return torch.autocast(device_type, dtype=dtype or torch.float32, enabled=dtype is not None)
