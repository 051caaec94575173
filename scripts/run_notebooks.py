"""Execute the course notebooks in place, top to bottom, with the reference solutions (refreshes committed outputs).

    python scripts/run_notebooks.py [notebooks/03_random_masking.ipynb ...]

Runs each notebook in notebooks/ with MAE_IMPL=solutions and two threads; prints each notebook's time
and any cell that took more than 5 s.
"""

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def run(path):
    notebook = nbformat.read(path, as_version=4)
    os.environ.update(MAE_IMPL="solutions", OMP_NUM_THREADS="2")
    last = [time.perf_counter()]

    def report_slow_cells(cell, cell_index, **_):
        now = time.perf_counter()
        if now - last[0] > 5:
            print(f"         cell {cell_index} took {now - last[0]:.1f} s", flush=True)
        last[0] = now

    start = time.perf_counter()
    client = NotebookClient(
        notebook,
        timeout=int(os.environ.get("NB_TIMEOUT", 600)),
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        on_cell_executed=report_slow_cells,
    )
    client.execute()
    nbformat.write(notebook, path)
    return time.perf_counter() - start


def main(argv):
    paths = [Path(p).resolve() for p in argv] or sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    total = 0.0
    for path in paths:
        seconds = run(path)
        total += seconds
        print(f"{seconds:6.1f} s  {path.name}", flush=True)
    print(f"{total:6.1f} s  in all")


if __name__ == "__main__":
    main(sys.argv[1:])
