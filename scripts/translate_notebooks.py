"""Write the Vietnamese notebooks, notebooks/vi/, from the English ones and one translation file each.

translations/vi/<notebook>.yaml has an entry per markdown cell of the English notebook, keyed by its cell id:
`vi` is the Vietnamese text, `en` the English text it translates, `sha` a hash of that English text. The code
cells and the notebook's metadata are the English notebook's, so both editions run the same code, except that the
parameters cell says `lang = "vi"`; the Colab badge points at the Vietnamese file. The outputs are the Vietnamese notebook's own: it is executed in Vietnamese
(`python scripts/run_notebooks.py notebooks/vi/...`, from notebooks/vi/, where the package speaks Vietnamese:
checks, hints, notices, figures), which records the hash of the code it ran (metadata mae.executed_code). A
code cell that changed in English takes the English cell and its outputs until the Vietnamese run.

    python scripts/translate_notebooks.py              # write notebooks/vi/
    python scripts/translate_notebooks.py --check      # exit 1 if a translation is missing or stale, a notebook
                                                       # in notebooks/vi/ is not what this writes, or was not
                                                       # executed since its code changed
    python scripts/translate_notebooks.py --todo [11]  # the cells to (re)translate, as entries to paste

A stale translation (its English cell changed since) is still written, and a missing one is left in English, so
the code cells can always be brought up to date; `--check` fails until the translation is done.
"""

import argparse
import difflib
import hashlib
import json
import re
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sync_notebooks import BADGE, badge, write  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LANGUAGE = "vi"
HEADER = f"""\
# The {LANGUAGE} text of notebooks/{{name}}.ipynb: one entry per markdown cell, keyed by the cell's id.
# vi: the translation. en: the English text it translates, and sha: its hash (both are written by --todo).
# After an edit: python scripts/translate_notebooks.py (writes notebooks/{LANGUAGE}/), then --check.
"""


def english_notebooks(root):
    return sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def translation_path(english, root):
    return root / "translations" / LANGUAGE / f"{english.stem}.yaml"


def text(cell):
    return "".join(cell["source"])


def source_hash(english_text):
    """The hash of an English markdown cell, less its Colab badge (whose URL follows mae.course.REPOSITORY)."""
    return hashlib.sha256(BADGE.sub("", english_text).encode()).hexdigest()[:12]


def load_translation_text(text):
    """{cell id: {"sha", "en", "vi"}}; every value is read as a string (a cell id may look like a number)."""
    return yaml.load(text, Loader=yaml.BaseLoader) or {}


def load_translation(path):
    return load_translation_text(path.read_text()) if path.exists() else {}


def code_hash(notebook):
    """A hash of a notebook's code cells (ids and sources): what its outputs were computed from."""
    code = [[cell["id"], text(cell)] for cell in notebook["cells"] if cell["cell_type"] == "code"]
    return hashlib.sha256(json.dumps(code).encode()).hexdigest()[:12]


EXECUTED = "executed_code"  # the notebook metadata key, under "mae", that run_notebooks.py writes


LANG_PARAMETER = re.compile(r"^lang = None(?=  #)", re.M)


def in_this_language(parameters):
    """The parameters cell with `lang = "vi"`: the one code difference between the editions, so that a Vietnamese
    notebook speaks Vietnamese wherever it runs (Colab moves it to the clone's notebooks/; papermill anywhere)."""
    if not LANG_PARAMETER.search(parameters):
        raise ValueError("the parameters cell has no `lang = None  # ...` line to set")
    return LANG_PARAMETER.sub(f'lang = "{LANGUAGE}"', parameters)


def translate(english, root):
    """The translation of the English notebook at `english` (a dict), and what is missing or stale in it. Code
    cells whose source the current Vietnamese notebook shares keep its outputs (its own, Vietnamese run)."""
    notebook = json.loads(english.read_text())
    notebook["metadata"].pop("mae", None)
    entries = load_translation(translation_path(english, root))
    current = root / "notebooks" / LANGUAGE / english.name
    own = json.loads(current.read_text()) if current.exists() else {"cells": [], "metadata": {}}
    ran = {cell.get("id"): cell for cell in own["cells"] if cell["cell_type"] == "code"}
    problems = []
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            if "parameters" in cell["metadata"].get("tags", []):
                try:
                    cell["source"] = in_this_language(text(cell)).splitlines(keepends=True)
                except ValueError as error:  # written in English, and said: --check fails
                    problems.append(f"cell {cell['id']}: {error}")
            mine = ran.get(cell["id"])
            if mine is not None and text(mine) == text(cell):  # its own run's outputs; the English tags
                cell["outputs"], cell["execution_count"] = mine["outputs"], mine["execution_count"]
                cell["metadata"].pop("execution", None)
                cell["metadata"].update({k: v for k, v in mine["metadata"].items() if k == "execution"})
            continue
        entry = entries.get(cell["id"], {})
        if not entry.get("vi", "").strip():
            problems.append(f"cell {cell['id']} is not translated")
            continue
        if entry.get("sha") != source_hash(text(cell)):
            problems.append(f"cell {cell['id']} changed in English since it was translated (see --todo)")
        elif source_hash(entry.get("en", "")) != entry["sha"]:
            problems.append(f"cell {cell['id']}: `en` and `sha` disagree (paste the entry --todo prints)")
        cell["source"] = entry["vi"].splitlines(keepends=True)
    markdown = {cell["id"] for cell in notebook["cells"] if cell["cell_type"] == "markdown"}
    problems += [
        f"entry {key} is no markdown cell of the English notebook: remove it"
        for key in entries
        if key not in markdown
    ]
    target = f"notebooks/{LANGUAGE}/{english.name}"
    title = BADGE.sub(badge(target).replace("\\", "\\\\"), text(notebook["cells"][0]), count=1)
    notebook["cells"][0]["source"] = title.splitlines(keepends=True)
    executed = own["metadata"].get("mae", {}).get(EXECUTED)
    if executed:  # the widgets its outputs show are its own run's
        notebook["metadata"]["mae"] = {EXECUTED: executed}
        notebook["metadata"].pop("widgets", None)
        if "widgets" in own["metadata"]:
            notebook["metadata"]["widgets"] = own["metadata"]["widgets"]
    if current.exists() and executed != code_hash(notebook):  # (a missing notebook is said to be missing)
        problems.append(
            f"not executed in {LANGUAGE} since its code changed: run python scripts/run_notebooks.py {target}"
        )
    return notebook, problems


def differences(written, expected):
    """Why a notebook in notebooks/vi/ is not what translate() gives: the cells that differ, by id."""
    if [c.get("id") for c in written["cells"]] != [c["id"] for c in expected["cells"]]:
        return ["its cells are not the English notebook's cells"]
    found = [
        f"code cell {cell['id']} differs from the English one"
        if want["cell_type"] == "code"
        else f"markdown cell {cell['id']} is not its translation (edit the translation, not the notebook)"
        for cell, want in zip(written["cells"], expected["cells"])
        if cell != want
    ]
    return found or ["its metadata differs from the English notebook's"]


def check(root):
    """Every problem with the translated notebooks, one line each (an empty list: all in step)."""
    lines = []
    englishes = english_notebooks(root)
    for english in englishes:
        path = root / "notebooks" / LANGUAGE / english.name
        name = f"notebooks/{LANGUAGE}/{english.name}"
        if not translation_path(english, root).exists():
            lines.append(f"{name}: no translation file {translation_path(english, root).relative_to(root)}")
            continue
        expected, problems = translate(english, root)
        lines += [f"{name}: {problem}" for problem in problems]
        if not path.exists():
            lines.append(f"{name}: missing")
        elif json.loads(path.read_text()) != expected:
            lines += [f"{name}: {why}" for why in differences(json.loads(path.read_text()), expected)]
    known = {english.name for english in englishes}
    lines += [
        f"notebooks/{LANGUAGE}/{path.name}: there is no English notebook of that name"
        for path in sorted((root / "notebooks" / LANGUAGE).glob("*.ipynb"))
        if path.name not in known
    ]
    return lines


class _Literal(yaml.SafeDumper):
    """Multi-line strings as literal blocks, so a translator reads and edits them as they are."""


_Literal.add_representer(
    str,
    lambda dumper, s: dumper.represent_scalar("tag:yaml.org,2002:str", s, style="|" if "\n" in s else None),
)


def entry_yaml(cell_id, english_text, vi=""):
    """A translation entry, as YAML to paste into a translation file."""
    entry = {cell_id: {"sha": source_hash(english_text), "en": english_text, "vi": vi}}
    return yaml.dump(entry, Dumper=_Literal, allow_unicode=True, sort_keys=False, width=10_000)


def todo(root, names=()):
    """The entries to write or update, per translation file, with what changed in English as comments."""
    out = []
    for english in english_notebooks(root):
        if names and not any(english.name.startswith(n) for n in names):
            continue
        path = translation_path(english, root)
        entries = load_translation(path)
        cells = json.loads(english.read_text())["cells"]
        pending = [] if path.exists() else [HEADER.format(name=english.stem)]
        for cell in (c for c in cells if c["cell_type"] == "markdown"):
            entry = entries.get(cell["id"], {})
            if entry.get("vi", "").strip() and entry.get("sha") == source_hash(text(cell)):
                continue
            if entry.get("vi", "").strip():
                diff = difflib.unified_diff(
                    entry.get("en", "").splitlines(), text(cell).splitlines(), lineterm="", n=1
                )
                pending.append(f"# cell {cell['id']} changed; the English diff since its translation:")
                pending += [f"#   {line}" for line in list(diff)[2:]]
            else:
                pending.append(f"# cell {cell['id']} is not translated yet")
            pending.append(entry_yaml(cell["id"], text(cell), entry.get("vi", "")))
        if pending:
            out += [f"######## {path.relative_to(root)}{'' if path.exists() else ' (a new file)'}", *pending]
    return "\n".join(out)


def main(argv=None, root=ROOT):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check", action="store_true", help="fail if a translation is missing or out of date")
    group.add_argument(
        "--todo", nargs="*", metavar="NOTEBOOK", help="print the cells to (re)translate (e.g. 11)"
    )
    args = parser.parse_args(argv)
    if args.todo is not None:
        print(todo(root, args.todo) or "every markdown cell is translated and up to date")
        return 0
    if args.check:
        lines = check(root)
        if lines:
            print("\n".join(lines))
            print(
                "python scripts/translate_notebooks.py --todo shows what to translate; run it without arguments"
            )
            print(f"to rewrite notebooks/{LANGUAGE}/ (all that a changed code cell or output needs)")
            return 1
        count = len(english_notebooks(root))
        print(f"{count} notebooks in notebooks/{LANGUAGE}/ match the English ones and their translations")
        return 0
    (root / "notebooks" / LANGUAGE).mkdir(exist_ok=True)
    for english in english_notebooks(root):
        if not translation_path(english, root).exists():
            print(f"skipped {english.name}: no {translation_path(english, root).relative_to(root)}")
            continue
        notebook, problems = translate(english, root)
        write(notebook, root / "notebooks" / LANGUAGE / english.name)
        print(f"wrote notebooks/{LANGUAGE}/{english.name}" + "".join(f"\n  {p}" for p in problems))
    return 0


if __name__ == "__main__":
    sys.exit(main())
