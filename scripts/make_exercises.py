"""Generate solutions/ and exercises/ from the reference model in mae/models/.

For each course step, mae/models/<step>.py is the one source:

- solutions/<step>.py is a copy of it, for the learner to read and compare with;
- exercises/<step>.py is its stub: every region

      # EXERCISE: <hint>
      ...reference code...
      # END EXERCISE

  becomes the same markers around `raise NotImplementedError("<hint>")`, at the region's indentation, with the
  hint's Vietnamese (translations/vi/messages.po) as a `# BÀI TẬP:` line under the English; everything else is
  copied unchanged.

Both folders' __init__.py import the components that mae/models/__init__.py imports from the step modules. Run it
after editing mae/models/; `--check` exits with 1 if a committed file differs from what it generates (CI runs that).

    python scripts/make_exercises.py [--check]
"""

import argparse
import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS, SOLUTIONS, EXERCISES = ROOT / "mae" / "models", ROOT / "solutions", ROOT / "exercises"


def _step_notebooks():
    """mae.impl.STEP_NOTEBOOKS (step -> notebook), read from its source: this script runs without torch."""
    tree = ast.parse((ROOT / "mae" / "impl.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "STEP_NOTEBOOKS":
            return ast.literal_eval(node.value)
    raise LookupError("mae/impl.py defines no STEP_NOTEBOOKS")


STEP_NOTEBOOKS = _step_notebooks()

BEGIN = re.compile(r"^(?P<indent>\s*)# EXERCISE: (?P<hint>.+?)\s*$")
END = re.compile(r"^\s*# END EXERCISE\s*$")
SOLUTION_HEADER = "# The reference for this step: a copy of mae/models/{name}, made by scripts/make_exercises.py (edit that file).\n"
STUB_HEADER = (
    "# Exercise stub, generated from mae/models/{name} by scripts/make_exercises.py.\n"
    "# Fill in each EXERCISE region; `python -m mae.checks` tells you which steps pass.\n"
)
PACKAGE = '''"""{what}: one module per step of notebooks {numbers} (mae/models/ holds the reference)."""

{imports}

__all__ = [
{names}]
'''


def vietnamese_hints():
    """{English hint: its Vietnamese} from translations/vi/messages.po (scripts/translate_messages.py catalogues
    the hints with the package's messages)."""
    from babel.messages.pofile import read_po

    path = ROOT / "translations" / "vi" / "messages.po"
    if not path.exists():
        return {}
    with path.open("rb") as file:
        return {m.id: m.string for m in read_po(file, locale="vi") if m.id and m.string and not m.fuzzy}


VI_LABEL = "BÀI TẬP:"  # the Vietnamese line under each `# EXERCISE:` of a stub


def make_stub(source, name, translated_hints=None):
    """The stub text for one reference file's text: each region's hint in English, then in Vietnamese (one stub
    for both editions of the course: a learner edits one exercises/ whichever notebooks they follow)."""
    translated_hints = vietnamese_hints() if translated_hints is None else translated_hints
    out, inside = [STUB_HEADER.format(name=name)], False
    for number, line in enumerate(source.splitlines(keepends=True), start=1):
        begin = BEGIN.match(line)
        if begin:
            if inside:
                raise ValueError(f"mae/models/{name}:{number}: EXERCISE region opened twice")
            inside = True
            out.append(line)
            if begin["hint"] in translated_hints:  # the Vietnamese learner reads the same stub
                one_line = " ".join(
                    translated_hints[begin["hint"]].split()
                )  # a comment, whatever the .po holds
                out.append(f"{begin['indent']}# {VI_LABEL} {one_line}\n")
            out.append(f"{begin['indent']}raise NotImplementedError({begin['hint']!r})\n")
        elif END.match(line):
            if not inside:
                raise ValueError(f"mae/models/{name}:{number}: END EXERCISE without a region")
            inside = False
            out.append(line)
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"mae/models/{name}: EXERCISE region never closed")
    return "".join(out)


def component_imports():
    """The lines of mae/models/__init__.py that import from a step module ('from .masking import random_masking'),
    and the names they import."""
    source = (MODELS / "__init__.py").read_text()
    nodes = [
        node
        for node in ast.parse(source).body
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module in STEP_NOTEBOOKS
    ]
    names = sorted(alias.asname or alias.name for node in nodes for alias in node.names)
    return "\n".join(ast.get_source_segment(source, node) for node in nodes), names


def expected_files():
    """{path relative to ROOT: text} of every generated file."""
    files, (imports, names) = {}, component_imports()
    names = "".join(f'    "{name}",\n' for name in names)
    numbers = sorted(set(STEP_NOTEBOOKS.values()))
    numbers = ", ".join(numbers[:-1]) + " and " + numbers[-1]
    hints = vietnamese_hints()
    for step in STEP_NOTEBOOKS:
        source = (MODELS / f"{step}.py").read_text()
        files[f"solutions/{step}.py"] = SOLUTION_HEADER.format(name=f"{step}.py") + source
        files[f"exercises/{step}.py"] = make_stub(source, f"{step}.py", hints)
    what = {"solutions": "The reference the course's learner reads", "exercises": "Your code for the course"}
    for folder, description in what.items():
        files[f"{folder}/__init__.py"] = PACKAGE.format(
            what=description, numbers=numbers, imports=imports, names=names
        )
    return files


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="fail if solutions/ or exercises/ is out of date"
    )
    args = parser.parse_args(argv)
    files = expected_files()
    stale = sorted(
        name
        for name, text in files.items()
        if not (ROOT / name).is_file() or (ROOT / name).read_text() != text
    )
    present = [
        p.relative_to(ROOT).as_posix() for folder in (SOLUTIONS, EXERCISES) for p in folder.glob("*.py")
    ]
    extra = sorted(name for name in present if name not in files)
    if args.check:
        if stale or extra:
            print(f"out of date: {', '.join(stale + extra)}; run python scripts/make_exercises.py")
            return 1
        print(f"solutions/ and exercises/ match mae/models/ ({len(files)} files)")
        return 0
    for name in stale:
        (ROOT / name).parent.mkdir(exist_ok=True)
        (ROOT / name).write_text(files[name])
    for name in extra:
        (ROOT / name).unlink()
    print(f"wrote {len(stale)} file(s), removed {len(extra)} in solutions/ and exercises/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
