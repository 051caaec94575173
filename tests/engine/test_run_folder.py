"""The run folder's lock (mae.engine.run_folder): a second run in a folder in use is refused, and a killed
run's lock blocks nothing.
"""

import pytest
from helpers import flags, run, spawn, steps, wait_until


@pytest.mark.integration
def test_a_second_run_in_a_used_folder_is_refused_and_a_killed_one_blocks_nothing(tmp_path):
    out = tmp_path / "run"
    first = spawn(flags(out, "--max_steps", "500"))
    wait_until(lambda: len(steps(out)) >= 1, first)
    second = run(flags(out, "--max_steps", "500"))
    assert second.returncode != 0
    assert f"{out} is in use by another run (pid {first.pid} on" in second.stderr
    first.kill()  # kill -9: its lock goes with it (the file stays behind, unlocked)
    first.communicate()
    assert (out / ".lock").exists()
    third = run(flags(out, "--max_steps", "2"))
    assert third.returncode == 0, third.stderr[-3000:]
    assert not (out / ".lock").exists()  # a run that ends removes its lock file


@pytest.mark.parametrize("kind", ["symlink", "hard link", "fifo"])
def test_a_lock_file_that_is_not_the_runs_own_is_refused_and_left_whole(tmp_path, kind):
    """A `.lock` that is a link names another file: taking the lock would truncate it and write a pid line there.
    The run refuses, naming it, and the other file keeps its bytes."""
    import os

    from mae.engine.run_folder import FolderLock

    out, precious = tmp_path / "run", tmp_path / "precious.txt"
    out.mkdir()
    precious.write_text("a week of notes\n")
    if kind == "symlink":
        (out / ".lock").symlink_to(precious)
    elif kind == "hard link":
        os.link(precious, out / ".lock")
    else:
        os.mkfifo(out / ".lock")
    problem = FolderLock(out).acquire()
    expected = {"symlink": "is a symbolic link (to ", "hard link": "is 2 names of one file",
                "fifo": "is not a regular file"}[kind]  # fmt: skip
    assert problem is not None and expected in problem and "nothing was written" in problem
    assert precious.read_text() == "a week of notes\n"


def test_the_lock_is_taken_and_released_in_a_plain_folder(tmp_path):
    from mae.engine.run_folder import FolderLock

    lock = FolderLock(tmp_path)
    assert lock.acquire() is None and (tmp_path / ".lock").read_text().startswith("pid ")
    assert FolderLock(tmp_path).acquire().startswith(f"{tmp_path} is in use by another run (pid ")
    lock.release()
    assert not (tmp_path / ".lock").exists()
