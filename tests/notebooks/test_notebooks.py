"""The course notebooks: each has what a step needs, is committed executed, and a learner's stub fails its
check.
"""

import json
import re

import nbformat
import pytest
from helpers import ROOT
from nbclient import NotebookClient

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
LEARNER_START = "learner-start"
EXERCISE_NUMBERS = ("01", "02", "03", "04", "05", "06", "07", "08", "12")
VIETNAMESE = sorted((ROOT / "notebooks" / "vi").glob("[0-9][0-9]_*.ipynb"))
EXERCISE_NOTEBOOKS = [p for p in NOTEBOOKS if p.name[:2] in EXERCISE_NUMBERS]


def test_the_course_has_notebooks_00_to_13():
    assert [p.name[:2] for p in NOTEBOOKS] == [f"{i:02d}" for i in range(14)]


def test_notebooks_10_to_13_use_the_shipped_checkpoints_and_the_real_commands():
    text = {
        p.name[:2]: "\n".join("".join(c["source"]) for c in json.loads(p.read_text())["cells"])
        for p in NOTEBOOKS
    }
    assert "../checkpoints/mae_mini_photos.pth" in text["10"] and "reconstruction_explorer" in text["10"]
    assert "show_attention_maps" in text["10"] and "mae_visualize_vit_large.pth" in text["10"]
    assert "../checkpoints/mae_mini_digits.pth" in text["11"] and "linprobe.main" in text["11"]
    assert "knn_accuracy" in text["11"] and "raw pixels" in text["11"]
    assert "finetune.main" in text["12"] and '"--eval", "--resume"' in text["12"]
    assert (
        "../checkpoints/shifted_digits_finetuned_mae.pth" in text["13"] and "corruption_study" in text["13"]
    )
    assert "benchmarks.corruption_summary" in text["13"] and "python -m mae.robustness" in text["13"]


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
    errors = [c for c in code for o in c["outputs"] if o["output_type"] == "error"]
    assert all(LEARNER_START in c["metadata"].get("tags", []) for c in errors), "only a stub's check fails"
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
    assert first.ename == "CheckFailed"
    assert "not written yet (exercises/patch_embed.py, in __init__)" in first.evalue
    assert "Conv2d named `proj`" in first.evalue
    shown = "\n".join(first.traceback)  # what Jupyter draws: the report alone, none of the checks' code
    assert (
        len(first.traceback) == 1
        and "not written yet" in shown
        and "harness" not in shown
        and "raise" not in shown
    )


def said(lang, message, **fields):
    """What the package prints for `message` in `lang` (the catalogue's translation, its fields filled)."""
    from mae import i18n

    i18n.set_language(lang)
    try:
        return i18n._(message).format(**fields)
    finally:
        i18n.set_language(None)


@pytest.mark.parametrize("path", NOTEBOOKS + VIETNAMESE, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_a_learner_opening_a_notebook_sees_what_is_true_for_them(path):
    """The committed outputs of the cells that depend on the learner's code are those of the untouched stubs: their
    code runs, no step is written yet, and a check cell says which function is still the stub, in the notebook's
    language."""
    lang = "vi" if path.parent.name == "vi" else "en"
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    marked = [c for c in cells if LEARNER_START in c["metadata"].get("tags", [])]
    assert marked and all("nbval-ignore-output" in c["metadata"]["tags"] for c in marked)
    shown = ["".join(o.get("text", "")) + o.get("evalue", "") for c in marked for o in c["outputs"]]
    text = "\n".join(shown)
    assert said(lang, "Using your code in exercises/ (impl={name!r})", name="exercises") in text
    assert "solutions/" not in text and "\u2713" not in text and "pass " not in text
    not_written = said(lang, "not written yet (exercises/{step}.py, in {function}): {hint}", step="", function="",
                       hint="").split(" (")[0]  # fmt: skip
    if path.name[:2] in ("09", "10", "11", "13"):
        numbers = said(lang, "{runs} and {last}", runs="01-08", last="12")
        steps = said(lang, "steps {numbers} are not written yet: using the reference for {steps}", numbers=numbers,
                     steps="")  # fmt: skip
        assert steps.split(":")[0] in text
    elif path.name.startswith("00"):
        assert text.count("todo ") == 9
    else:
        checked = [o for c in marked[1:] for o in c["outputs"] if o["output_type"] == "error"]
        assert checked and all(o["ename"] == "CheckFailed" and not_written in o["evalue"] for o in checked)
    runs_yours = [c for c in cells if re.search(r"\bcode\.\w", "".join(c["source"]))]
    assert all(c in marked for c in runs_yours), "a cell that runs the learner's code is theirs"
    if path.name[:2] in EXERCISE_NUMBERS:  # their step is a stub: no result, no "equal: True"
        assert all(not c["outputs"] for c in runs_yours if not c["source"][0].startswith("checks."))


@pytest.mark.integration
def test_papermill_lang_vi_runs_an_english_notebook_in_vietnamese(tmp_path):
    """`papermill -p lang vi` on notebook 01 with the stubs: the notice and the failing check speak Vietnamese,
    the hint quoted from the stub too."""
    import subprocess
    import sys

    out = tmp_path / "01.ipynb"
    env = {**__import__("os").environ, "MAE_IMPL": "exercises", "OMP_NUM_THREADS": "2"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "papermill",
            "--cwd",
            str(ROOT / "notebooks"),
            "-k",
            "python3",
            "--log-level",
            "WARNING",
            "--no-progress-bar",
            "-p",
            "lang",
            "vi",
            str(NOTEBOOKS[1]),
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
    )  # fmt: skip  (exits 1: the check fails on the stub)
    nb = json.loads(out.read_text())
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    said = "".join("".join(o.get("text", [])) for o in outputs)
    errors = [
        o
        for c in nb["cells"]
        if c["cell_type"] == "code"
        for o in c.get("outputs", [])
        if o["output_type"] == "error"
    ]
    assert "Đang dùng mã của bạn trong exercises/" in said
    assert errors and "chưa được viết (exercises/patch_embed.py, trong __init__)" in errors[0]["evalue"]
    assert "một Conv2d tên là `proj`" in errors[0]["evalue"] and "not written" not in errors[0]["evalue"]
