"""Atomic writes (mae.checkpoint.atomic): a write that fails leaves the previous file as it was, and no
temporary file.
"""

import pytest

from mae.checkpoint import atomic_save, read_checkpoint


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "checkpoint-last.pth"
    atomic_save({"step": 1}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_save({"step": 2, "bad": Unpicklable()}, path)
    assert read_checkpoint(path) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-last.pth"]
