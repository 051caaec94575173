"""Reading .pth files (mae.checkpoint.pth, through read_checkpoint and load_checkpoint): pickled code is
refused without running, and a damaged file is named, never a deep unpickling error.
"""

import os
import pickle
from pathlib import Path

import pytest
import torch

import mae
from mae import CheckpointError, UnsafeCheckpointError, load_checkpoint
from mae.checkpoint import read_checkpoint


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pth"
    torch.save({"model": {"cls_token": torch.zeros(1)}, "payload": Exploit()}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"refusing to load .*evil\.pth.*system"):
        load_checkpoint(mae.mae_vit_tiny_patch8(), path)
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_plain_pickle_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(Path("/etc/passwd"), protocol=2))
    with pytest.raises(UnsafeCheckpointError, match="refusing to load .*pathlib.PosixPath"):
        read_checkpoint(path)
    other_protocol = tmp_path / "protocol4.pkl"
    other_protocol.write_bytes(pickle.dumps({"a": 1}, protocol=4))
    with pytest.raises(CheckpointError, match=r"protocol4\.pkl: the file is corrupt or not"):
        read_checkpoint(other_protocol)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupt_files_name_the_file(tmp_path, case, damage):
    good = tmp_path / "good.pth"
    torch.save({"model": case["state_dict"]}, good)
    path = tmp_path / f"{damage}.pth"
    data = {"truncated": good.read_bytes()[: good.stat().st_size // 2], "garbage": b"", "empty": b""}[damage]
    variants = [data]
    if damage == "garbage":  # random bytes, and a real file with random bytes inside, fail in many places
        generator = torch.Generator().manual_seed(0)
        body = good.read_bytes()
        variants = [
            torch.randint(0, 256, (4096,), generator=generator, dtype=torch.uint8).numpy().tobytes()
            for _ in range(20)
        ]
        for start in range(0, len(body), max(1, len(body) // 20)):
            noise = torch.randint(0, 256, (64,), generator=generator, dtype=torch.uint8).numpy().tobytes()
            variants.append(body[:start] + noise + body[start + 64 :])
    refused = []
    for variant in variants:
        path.write_bytes(variant)
        try:
            load_checkpoint(mae.MAE(**case["config"]), path)
            refused.append(False)  # damage inside tensor data can still load: that is not an error here
        except CheckpointError as error:
            # Random bytes in tensor data may read as NaN: refused by name too, as load_checkpoint refuses NaN.
            assert f"cannot read checkpoint {path}" in str(
                error
            ) or f"checkpoint {path} holds non-finite" in str(error)
            refused.append(True)
        except Exception as error:  # noqa: BLE001 - the point is that nothing else escapes
            raise AssertionError(f"{type(error).__name__} escaped for a damaged file: {error}") from error
    assert all(
        refused[:20] if damage == "garbage" else refused
    )  # random bytes, truncated, empty: always refused
