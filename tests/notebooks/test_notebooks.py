"""The course notebooks: each has what a step needs, is committed executed, and a learner's stub fails its
check.
"""

import json

import nbformat
import pytest
from helpers import ROOT
from nbclient import NotebookClient

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
EXERCISE_NOTEBOOKS = [p for p in NOTEBOOKS if "01" <= p.name[:2] <= "08" or p.name[:2] == "12"]


def test_the_course_has_notebooks_00_to_12():
    assert [p.name[:2] for p in NOTEBOOKS] == [f"{i:02d}" for i in range(13)]


def test_notebooks_10_to_12_use_the_shipped_checkpoints_and_the_real_commands():
    text = {
        p.name[:2]: "\n".join("".join(c["source"]) for c in json.loads(p.read_text())["cells"])
        for p in NOTEBOOKS
    }
    assert "../checkpoints/mae_mini_photos.pth" in text["10"] and "reconstruction_explorer" in text["10"]
    assert "show_attention_maps" in text["10"] and "mae_visualize_vit_large.pth" in text["10"]
    assert "../checkpoints/mae_mini_digits.pth" in text["11"] and "linprobe.main" in text["11"]
    assert "knn_accuracy" in text["11"] and "raw pixels" in text["11"]
    assert "finetune.main" in text["12"] and '"--eval", "--resume"' in text["12"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_structure(path):
    nb = json.loads(path.read_text())
    cells = nb["cells"]
    text = "\n".join("".join(c["source"]) for c in cells)
    assert "colab.research.google.com/github/" in "".join(cells[0]["source"]) and path.name in text
    assert 'if "google.colab" in sys.modules:' in "".join(cells[1]["source"])
    assert "parameters" in cells[2]["metadata"].get("tags", [])
    code = [c for c in cells if c["cell_type"] == "code"]
    counts = [c["execution_count"] for c in code]
    assert counts == list(range(1, len(code) + 1)), "commit the notebook executed top to bottom"
    assert not any(o["output_type"] == "error" for c in code for o in c["outputs"])
    assert any("image/png" in o.get("data", {}) for c in code for o in c["outputs"]), (
        "each step draws a figure"
    )
    assert "**Question.**" in text and "<summary>Answer</summary>" in text


@pytest.mark.parametrize("path", EXERCISE_NOTEBOOKS, ids=lambda p: p.name)
def test_exercise_notebooks_have_exercise_check_hints_and_comparison(path):
    text = path.read_text()
    assert "exercises/" in text and "checks.check_" in text and "<summary>Hint 1</summary>" in text
    assert "mae." in text  # compares with the package (or the official vectors)


def test_widgets_where_they_help():
    text = {p.name[:2]: p.read_text() for p in NOTEBOOKS}
    assert (
        "mask_ratio_explorer" in text["03"]
        and "patch_picker" in text["01"]
        and "position_picker" in text["02"]
        and "reconstruction_explorer" in text["10"]
    )


@pytest.mark.integration
def test_a_learner_with_the_stub_sees_a_helpful_failure(monkeypatch):
    """Notebook 01 run on the unmodified exercises: the check cell fails and says what to write."""
    monkeypatch.setenv("MAE_IMPL", "exercises")
    path = next(p for p in NOTEBOOKS if p.name.startswith("01"))
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(path.parent)}}).execute()  # fmt: skip
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert errors, "the check on the stub should fail"
    first = errors[0]
    assert first.ename == "AssertionError"
    assert "not written yet (exercises/patch_embed.py, in __init__)" in first.evalue
    assert "Conv2d named `proj`" in first.evalue
