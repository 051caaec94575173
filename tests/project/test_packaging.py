"""The repository holds together: dependency lists agree, the exercise stubs are generated from the reference."""

import sys

import pytest
import tomllib
import yaml
from helpers import ROOT

sys.path.insert(0, str(ROOT / "scripts"))

import make_exercises  # noqa: E402


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = set(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared |= set(extra)
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_lists = [d["pip"] for d in environment["dependencies"] if isinstance(d, dict)]
    assert len(pip_lists) == 1
    conda = [d for d in environment["dependencies"] if isinstance(d, str)]
    assert "python=3.11" in conda
    assert set(pip_lists[0]) == declared, (
        f"only in environment.yml: {sorted(set(pip_lists[0]) - declared)}; "
        f"only in pyproject.toml: {sorted(declared - set(pip_lists[0]))}"
    )


def test_exercises_are_generated_from_solutions():
    assert make_exercises.main(["--check"]) == 0


def test_stub_generation_replaces_regions_only():
    source = (
        "def f(x):\n"
        "    y = 1\n"
        "    # EXERCISE: return twice x plus y\n"
        "    return 2 * x + y\n"
        "    # END EXERCISE\n"
    )
    stub = make_exercises.make_stub(source, "f.py")
    assert "    y = 1\n" in stub and "return 2 * x" not in stub
    assert "    raise NotImplementedError('return twice x plus y')\n" in stub
    namespace = {}
    exec(compile(stub, "f.py", "exec"), namespace)
    with pytest.raises(NotImplementedError, match="twice x"):
        namespace["f"](1)
    with pytest.raises(ValueError, match="never closed"):
        make_exercises.make_stub("# EXERCISE: x\n", "g.py")
