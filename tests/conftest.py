from pathlib import Path

import pytest
import torch

torch.set_num_threads(2)

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def golden():
    """Test vectors from the official MAE code (a copy of shared/golden/official_mae_tiny.pt)."""
    return torch.load(DATA / "official_mae_tiny.pt", weights_only=True)


@pytest.fixture(scope="session")
def official_shapes():
    import json

    return json.loads((DATA / "official_state_dict_shapes.json").read_text())


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
