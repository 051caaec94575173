"""Generate the exercise stubs in exercises/ from the reference code in solutions/.

In a solution file, every region

    # EXERCISE: <hint>
    ...reference code...
    # END EXERCISE

becomes, in the stub, the same markers around `raise NotImplementedError("<hint>")`, at
the region's indentation; everything else is copied unchanged. Run it after editing
solutions/; `--check` exits with 1 if the committed stubs differ from what it generates
(CI runs that).

    python scripts/make_exercises.py [--check]
"""

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS, EXERCISES = ROOT / "solutions", ROOT / "exercises"
BEGIN = re.compile(r"^(?P<indent>\s*)# EXERCISE: (?P<hint>.+?)\s*$")
END = re.compile(r"^\s*# END EXERCISE\s*$")
HEADER = (
    "# Exercise stub, generated from solutions/{name} by scripts/make_exercises.py.\n"
    "# Fill in each EXERCISE region; `python -m mae.checks` tells you which steps pass.\n"
)


def make_stub(source, name):
    """The stub text for one solution file's text."""
    out, inside = [HEADER.format(name=name)], False
    for number, line in enumerate(source.splitlines(keepends=True), start=1):
        begin = BEGIN.match(line)
        if begin:
            if inside:
                raise ValueError(f"solutions/{name}:{number}: EXERCISE region opened twice")
            inside = True
            out += [line, f"{begin['indent']}raise NotImplementedError({begin['hint']!r})\n"]
        elif END.match(line):
            if not inside:
                raise ValueError(f"solutions/{name}:{number}: END EXERCISE without a region")
            inside = False
            out.append(line)
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"solutions/{name}: EXERCISE region never closed")
    return "".join(out)


def expected_stubs():
    return {p.name: make_stub(p.read_text(), p.name) for p in sorted(SOLUTIONS.glob("*.py"))}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if exercises/ is out of date")
    args = parser.parse_args(argv)
    stubs = expected_stubs()
    stale = sorted(
        name
        for name, text in stubs.items()
        if not (EXERCISES / name).is_file() or (EXERCISES / name).read_text() != text
    )
    extra = sorted(p.name for p in EXERCISES.glob("*.py") if p.name not in stubs)
    if args.check:
        if stale or extra:
            print(
                f"exercises/ is out of date: {', '.join(stale + extra)}; run python scripts/make_exercises.py"
            )
            return 1
        print(f"exercises/ matches solutions/ ({len(stubs)} files)")
        return 0
    EXERCISES.mkdir(exist_ok=True)
    for name in stale:
        (EXERCISES / name).write_text(stubs[name])
    for name in extra:
        (EXERCISES / name).unlink()
    print(f"wrote {len(stale)} file(s), removed {len(extra)} in exercises/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
