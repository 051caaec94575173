"""Fixtures of every test folder: the golden vectors, a pretrained digits MAE, and fake launchers and GPUs."""

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed

torch.set_num_threads(2)

FIXTURES = Path(__file__).parent / "fixtures"
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                    "CUDA_VISIBLE_DEVICES")  # fmt: skip


@pytest.fixture(scope="session")
def golden():
    """Test vectors from the official MAE code (a copy of shared/golden/official_mae_tiny.pt)."""
    return torch.load(FIXTURES / "official_mae_tiny.pt", weights_only=True)


@pytest.fixture(scope="session")
def official_shapes():
    return json.loads((FIXTURES / "official_state_dict_shapes.json").read_text())


@pytest.fixture
def case(golden):
    """The first golden case: config, state_dict, imgs, noise, mask_ratio and every intermediate."""
    return golden["cases"][0]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _english(monkeypatch):
    """Every test starts in English, whatever $MAE_LANG the shell has (the tests match English messages); a test
    that wants Vietnamese says so."""
    from mae import i18n

    monkeypatch.delenv("MAE_LANG", raising=False)
    i18n.set_language(None)
    yield
    i18n.set_language(None)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A digits MAE checkpoint of this project's format (random weights are enough for plumbing)."""
    import mae

    path = tmp_path_factory.mktemp("pretrained") / "mae.pth"
    torch.manual_seed(0)
    mae.save_checkpoint(path, mae.mae_vit_mini_patch8(img_size=32, in_chans=1, norm_pix_loss=True))
    return path


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
    records set_device, and records torch.distributed.init_process_group instead of starting a process group."""
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
            torch.distributed, "init_process_group", lambda **kwargs: calls.groups.append(kwargs)
        )
        return calls

    return install
