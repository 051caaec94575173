"""The Colab set-up cell of every notebook (scripts/sync_notebooks.py), run without Colab: a fake
`google.colab` and a local repository.
"""

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
from helpers import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import sync_notebooks  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_every_notebook_has_the_generated_colab_cell_and_badge():
    assert sync_notebooks.main(["--check"]) == 0
    for path in NOTEBOOKS:
        cells = json.loads(path.read_text())["cells"]
        assert "".join(cells[1]["source"]) == sync_notebooks.colab_cell()
        assert sync_notebooks.badge(f"notebooks/{path.name}") in "".join(cells[0]["source"])


def test_a_fork_gets_its_own_urls():
    cell = sync_notebooks.colab_cell("https://github.com/someone/mae-fork")
    assert 'repository = "https://github.com/someone/mae-fork"' in cell
    assert sync_notebooks.badge(
        "notebooks/03_random_masking.ipynb", "https://github.com/someone/mae-fork.git"
    ) == (
        "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        "(https://colab.research.google.com/github/someone/mae-fork/blob/main/notebooks/03_random_masking.ipynb)"
    )


@pytest.fixture
def course_repository(tmp_path):
    """A small git repository shaped like the course, to clone instead of GitHub."""
    repo = tmp_path / "origin"
    for folder in ("exercises", "notebooks"):
        (repo / folder).mkdir(parents=True)
        (repo / folder / "README").write_text(folder)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "course"], check=True)
    return repo


class FakeColab:
    """google.colab with drive.mount and output.enable_custom_widget_manager; records what the cell asked for."""

    def __init__(self, content):
        self.mounted, self.widget_manager = [], 0
        self.package = types.ModuleType("google.colab")
        self.package.drive = types.SimpleNamespace(mount=self.mount)
        self.package.output = types.SimpleNamespace(enable_custom_widget_manager=self.enable)
        self.content = content

    def mount(self, path):
        self.mounted.append(path)
        (self.content / "drive" / "MyDrive").mkdir(parents=True, exist_ok=True)

    def enable(self):
        self.widget_manager += 1


def run_cell(cell, content, origin, monkeypatch, colab, keep_in_drive=True):
    """Execute the cell as Colab would, with /content moved to `content` and pip recorded instead of run."""
    code = cell.replace("/content", str(content)).replace(sync_notebooks.REPOSITORY, str(origin))
    if not keep_in_drive:
        code = code.replace("keep_in_drive = True", "keep_in_drive = False")
    pip_calls, real_run = [], subprocess.run

    def run(command, **kwargs):
        if command[:3] == [sys.executable, "-m", "pip"]:
            pip_calls.append(command)
            return subprocess.CompletedProcess(command, 0)
        return real_run(command, **kwargs)

    monkeypatch.setitem(sys.modules, "google.colab", colab.package)
    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(content)
    exec(compile(code, "colab-cell", "exec"), {})
    return pip_calls, Path(os.getcwd())


def test_the_colab_cell_clones_into_drive_once_and_reuses_it(tmp_path, course_repository, monkeypatch):
    content = tmp_path / "content"
    content.mkdir()
    colab = FakeColab(content)
    cell = sync_notebooks.colab_cell()
    root = content / "drive" / "MyDrive" / "mae-from-scratch"

    pip_calls, cwd = run_cell(cell, content, course_repository, monkeypatch, colab)
    assert colab.mounted == [f"{content}/drive"] and colab.widget_manager == 1
    assert (root / "exercises" / "README").read_text() == "exercises"
    assert cwd == root / "notebooks" and str(root) in sys.path
    assert pip_calls == [[sys.executable, "-m", "pip", "install", "-q", "-e", f"{root}[course]"]]

    # The next notebook, in a fresh runtime: the learner's work in Drive is kept, nothing is cloned again.
    (root / "exercises" / "patch_embed.py").write_text("# my exercise")
    monkeypatch.chdir(content)
    pip_calls, cwd = run_cell(cell, content, tmp_path / "nowhere", monkeypatch, colab)
    assert (root / "exercises" / "patch_embed.py").read_text() == "# my exercise"
    assert cwd == root / "notebooks" and len(pip_calls) == 1


def test_the_colab_cell_without_drive_clones_a_session_copy(tmp_path, course_repository, monkeypatch):
    content = tmp_path / "content"
    content.mkdir()
    colab = FakeColab(content)
    _, cwd = run_cell(sync_notebooks.colab_cell(), content, course_repository, monkeypatch, colab, False)
    assert colab.mounted == [] and cwd == content / "mae-from-scratch" / "notebooks"


def test_the_colab_cell_does_nothing_outside_colab(monkeypatch, tmp_path):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.chdir(tmp_path)
    exec(compile(sync_notebooks.colab_cell(), "colab-cell", "exec"), {})
    assert Path(os.getcwd()) == tmp_path


def test_a_vietnamese_notebook_in_colab_speaks_vietnamese(tmp_path, course_repository, monkeypatch, capsys):
    """Colab opens notebooks/vi/03 from GitHub in /content; its set-up cell moves the kernel to the clone's
    notebooks/ (not vi/), so the language comes from the parameters cell: its check speaks Vietnamese."""
    from mae import i18n

    content = tmp_path / "content"
    content.mkdir()
    cells = json.loads((ROOT / "notebooks" / "vi" / "03_random_masking.ipynb").read_text())["cells"]
    source = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    _, cwd = run_cell(source[0], content, course_repository, monkeypatch, FakeColab(content))
    assert cwd.name == "notebooks" and cwd.parent.name == "mae-from-scratch"
    parameters = next(s for s in source if s.startswith("# Parameters"))
    namespace = {}
    exec(parameters, namespace)
    assert namespace["lang"] == "vi"
    monkeypatch.setattr(i18n, "_chosen", None)
    monkeypatch.setenv(
        "MAE_IMPL", "exercises"
    )  # as on Colab (the default); use() exports it: undone afterwards
    from mae import impl
    from mae.checks import CheckFailed, check_random_masking
    from mae.course import use

    before = impl.active()
    try:
        use(namespace["impl"], namespace["seed"], lang=namespace["lang"], exercise="masking")
        assert "Đang dùng mã của bạn trong exercises/" in capsys.readouterr().out
        with pytest.raises(CheckFailed) as failed:
            check_random_masking(lambda x, mask_ratio, noise=None: (x, None, None))  # a learner's first try
        assert failed.value.report() == "mask phải là một tensor, nhưng nhận được NoneType"
        assert i18n.language() == "vi"
    finally:
        i18n.set_language(None)
        impl.select(before)  # the tests after this one build the same models
