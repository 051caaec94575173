"""Write the parts every course notebook shares, from one source: the Colab badge, the Colab set-up cell, and the
tags of the cells whose committed output is what a learner sees on a fresh checkout (see LEARNER_START).

The repository URL comes from `mae.course.REPOSITORY`; set it there (for a fork, say) and run this
script. `--check` exits with 1 if a notebook differs from what it would write (CI runs that).

    python scripts/sync_notebooks.py [--check]
"""

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from mae.course import REPOSITORY  # noqa: E402

NOTEBOOKS = ROOT / "notebooks"
# Cells whose output depends on whose code runs and on what the learner has written: the `use(...)` cell, the check
# cells, notebook 00's summary, and every cell that runs the learner's code (`code.PatchEmbed(...)`, say). Their
# committed output comes from a run on the untouched stubs (what a learner sees before running anything:
# scripts/run_notebooks.py), and nbval executes them without comparing it.
LEARNER_START = "learner-start"
LEARNER_START_CELL = re.compile(
    r"^(code = use\(|checks\.check_\w+\(|results = checks\.run_checks\()|\bcode\.\w", re.M
)
BADGE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)")

COLAB_CELL = """\
#@title Colab set-up: fetch the course, keep it in your Google Drive, install it (elsewhere this does nothing)
import sys

if "google.colab" in sys.modules:
    import os
    import subprocess

    from google.colab import output

    repository = "{repository}"  # a fork: its URL
    keep_in_drive = True  # your exercises/ outlive the session and are shared by all notebooks; False: this session only
    if keep_in_drive:
        from google.colab import drive

        drive.mount("/content/drive")
        root = "/content/drive/MyDrive/mae-from-scratch"
    else:
        root = "/content/mae-from-scratch"
    if not os.path.isdir(os.path.join(root, "exercises")):  # the first notebook clones; later ones reuse it
        subprocess.run(["git", "clone", "-q", repository, root], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", root + "[course]"], check=True)
    sys.path.insert(0, root)
    os.chdir(os.path.join(root, "notebooks"))
    output.enable_custom_widget_manager()  # ipywidgets 8 sliders"""


def colab_cell(repository=REPOSITORY):
    return COLAB_CELL.format(repository=repository)


def badge(notebook_path, repository=REPOSITORY):
    """The 'Open In Colab' badge of a notebook, e.g. notebooks/00_setup.ipynb."""
    github = repository.removeprefix("https://github.com/").removesuffix(".git")
    target = f"https://colab.research.google.com/github/{github}/blob/main/{notebook_path}"
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({target})"


def synced(path):
    """The notebook at `path` (a dict) with its badge and Colab cell as they should be."""
    notebook = json.loads(path.read_text())
    cells = notebook["cells"]
    title = "".join(cells[0]["source"])
    if not BADGE.search(title):
        raise ValueError(f"{path.name}: the first cell has no Colab badge")
    title = BADGE.sub(badge(path.relative_to(ROOT).as_posix()).replace("\\", "\\\\"), title, count=1)
    cells[0]["source"] = title.splitlines(keepends=True)
    if 'if "google.colab" in sys.modules:' not in "".join(cells[1]["source"]):
        raise ValueError(f"{path.name}: the second cell is not the Colab set-up cell")
    cells[1]["source"] = colab_cell().splitlines(keepends=True)
    # Folded where the learner works: JupyterLab shows one collapsed line, Colab the form's title (#@title).
    cells[1]["metadata"].update(jupyter={"source_hidden": True}, cellView="form")
    for cell in cells:
        if cell["cell_type"] == "code":
            tag_learner_start(cell)
    return notebook


def tag_learner_start(cell):
    """Tag a code cell `learner-start` and `nbval-ignore-output` if it is one of LEARNER_START's; untag it if not."""
    tags = [t for t in cell.get("metadata", {}).get("tags", []) if t != LEARNER_START]
    if LEARNER_START_CELL.search(
        "".join(cell["source"])
    ):  # in one order, so that a second run changes nothing
        tags = [*(t for t in tags if t != "nbval-ignore-output"), LEARNER_START, "nbval-ignore-output"]
    if tags:
        cell.setdefault("metadata", {})["tags"] = tags
    else:
        cell.get("metadata", {}).pop("tags", None)


def write(notebook, path):
    """As nbformat writes it (keys sorted), so that a notebook this writes and one run_notebooks.py wrote differ
    only where their content does."""
    path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False, sort_keys=True) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a notebook is out of date")
    args = parser.parse_args(argv)
    paths = sorted(p for p in NOTEBOOKS.glob("**/[0-9][0-9]_*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    stale = [p for p in paths if synced(p) != json.loads(p.read_text())]
    if args.check:
        if stale:
            names = ", ".join(p.relative_to(ROOT).as_posix() for p in stale)
            print(f"Colab cells out of date in {names}; run python scripts/sync_notebooks.py")
            return 1
        print(f"{len(paths)} notebooks have the Colab badge and set-up cell for {REPOSITORY}")
        return 0
    for path in stale:
        write(synced(path), path)
    print(f"updated {len(stale)} of {len(paths)} notebooks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
