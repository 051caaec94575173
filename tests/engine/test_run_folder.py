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
