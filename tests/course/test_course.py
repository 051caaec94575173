"""The notebooks' helpers (mae.course): a notebook started in a translation folder runs in notebooks/."""

from pathlib import Path

from helpers import ROOT

VI = ROOT / "notebooks" / "vi"


def test_a_notebook_started_in_a_translation_folder_runs_in_notebooks(monkeypatch):
    from mae import course

    monkeypatch.chdir(VI)
    course.run_in_notebooks_folder()
    assert Path.cwd() == ROOT / "notebooks" and Path("../checkpoints/mae_mini_digits.pth").exists()
    course.run_in_notebooks_folder()  # in notebooks/ (the English notebooks, and Colab) it stays where it is
    assert Path.cwd() == ROOT / "notebooks"
