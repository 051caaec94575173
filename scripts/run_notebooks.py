"""Execute the course notebooks in place, top to bottom, and refresh their committed outputs.

    python scripts/run_notebooks.py [notebooks/03_random_masking.ipynb ...]

Two runs per notebook, each in a fresh kernel with two threads:

1. with the reference (MAE_IMPL=solutions): every cell's output, what nbval compares in CI;
2. with the untouched stubs of exercises/ (MAE_IMPL=exercises), up to the last cell tagged `learner-start` (the
   `use(...)` cell, the check cells, notebook 00's summary, the cells that run the learner's code;
   scripts/sync_notebooks.py tags them): those cells take this run's output, which is what a learner sees before
   writing anything ("steps 01-08 and 12 are not written yet", a check that says which function is still the stub,
   no output under a cell that runs a stub), not a green tick or an "equal: True" they have not earned. nbval
   executes them without comparing their output.

A notebook of notebooks/<lang>/ runs from there, in its language (mae.course.use), and records the hash of its
code cells (metadata mae.executed_code) for translate_notebooks.py --check. Prints each notebook's time and any
cell that took more than 5 s.
"""

import copy
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
LEARNER_START = "learner-start"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_exercises import expected_files  # noqa: E402
from translate_notebooks import EXECUTED, code_hash  # noqa: E402


def execute(notebook, folder, impl, allow_errors=False, report=None):
    # English unless the notebook says otherwise (the Vietnamese ones say lang = "vi"), whatever the shell's $MAE_LANG.
    os.environ.update(MAE_IMPL=impl, OMP_NUM_THREADS="2", MAE_LANG="en")
    client = NotebookClient(
        notebook,
        timeout=int(os.environ.get("NB_TIMEOUT", 600)),
        kernel_name="python3",
        allow_errors=allow_errors,
        resources={"metadata": {"path": str(folder)}},
        on_cell_executed=report,
    )
    client.execute()
    return notebook


def learner_start_outputs(notebook, folder):
    """{cell index: outputs} of the learner-start cells, from a run on the untouched stubs."""
    marked = [i for i, cell in enumerate(notebook.cells) if LEARNER_START in cell.metadata.get("tags", [])]
    if not marked:
        return {}
    first_part = copy.deepcopy(notebook)
    first_part.cells = first_part.cells[: marked[-1] + 1]
    execute(first_part, folder, "exercises", allow_errors=True)  # a check cell fails: the step is a stub
    return {i: [o for o in first_part.cells[i].outputs if not _unwritten(o)] for i in marked}


def _unwritten(output):
    """The error of a cell that ran a stub (outside a check, which says so itself): the cell shows nothing at the
    start, as it does until the learner runs it, instead of a claim about code nobody wrote."""
    return output.get("output_type") == "error" and output.get("ename") == "NotImplementedError"


def run(path):
    notebook = nbformat.read(path, as_version=4)
    last = [time.perf_counter()]

    def report_slow_cells(cell, cell_index, **_):
        now = time.perf_counter()
        if now - last[0] > 5:
            print(f"         cell {cell_index} took {now - last[0]:.1f} s", flush=True)
        last[0] = now

    start = time.perf_counter()
    execute(notebook, path.parent, "solutions", report=report_slow_cells)
    for index, outputs in learner_start_outputs(notebook, path.parent).items():
        notebook.cells[index].outputs = outputs  # the execution count stays the reference run's, in order
    if path.parent != NOTEBOOKS:  # a translation: it records what code its outputs come from
        notebook.metadata["mae"] = {EXECUTED: code_hash(notebook)}
    nbformat.write(notebook, path)
    return time.perf_counter() - start


def check_stubs_untouched():
    """The stub run must see the stubs as committed: refuse when exercises/ holds someone's work."""
    edited = [
        name
        for name, text in expected_files().items()
        if name.startswith("exercises/") and (ROOT / name).read_text() != text
    ]
    if edited:
        sys.exit(f"exercises/ is not as generated ({', '.join(edited)}): run scripts/make_exercises.py first")


def main(argv):
    check_stubs_untouched()
    paths = [Path(p).resolve() for p in argv] or sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    # (notebooks/vi/ too: python scripts/run_notebooks.py notebooks/vi/*.ipynb, after translate_notebooks.py)
    total = 0.0
    for path in paths:
        seconds = run(path)
        total += seconds
        print(f"{seconds:6.1f} s  {path.name}", flush=True)
    print(f"{total:6.1f} s  in all")


if __name__ == "__main__":
    main(sys.argv[1:])
