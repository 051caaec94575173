"""Whose code the model components come from: the learner's `exercises/` or the reference `solutions/`.

One switch, resolved here and nowhere else: MAE_IMPL=exercises or MAE_IMPL=solutions (a notebook's
`impl` parameter and `python -m mae.checks --impl` set the same thing). When it is not set, the
course (the notebooks, `python -m mae.checks`) runs the learner's code and everything else
(`import mae`, the training commands) runs the reference.

With the learner's code, a step that is not written yet (one of its EXERCISE regions still only
raises NotImplementedError) runs the reference instead: the reference file is loaded in the
stub's place, inside the `exercises` package, so that it builds on the steps the learner did
write. A step that is written but wrong is never replaced: its check says what is wrong.
"""

import ast
import importlib
import importlib.abc
import importlib.util
import os
import re
import sys
from pathlib import Path

IMPLEMENTATIONS = ("exercises", "solutions")
# The course's steps: exercise file -> notebook number, in the order the course builds them.
STEPS = {
    "patch_embed": "01",
    "pos_embed": "02",
    "masking": "03",
    "attention": "04",
    "transformer": "05",
    "encoder": "06",
    "decoder": "07",
    "model": "08",
    "classifier": "12",
}

_BEGIN = re.compile(r"^\s*# EXERCISE:")
_END = re.compile(r"^\s*# END EXERCISE\s*$")


def _package_dir(name):
    spec = importlib.util.find_spec(name)  # finds the folder without importing the package
    return Path(next(iter(spec.submodule_search_locations)))


def resolve(impl=None, default="solutions"):
    """The implementation to run: `impl` if given, else $MAE_IMPL, else `default`."""
    name = (impl or os.environ.get("MAE_IMPL", "") or default).strip()
    if name not in IMPLEMENTATIONS:
        raise ValueError(f"MAE_IMPL (or impl) must be one of {IMPLEMENTATIONS}, got {name!r}")
    return name


def is_stub(source):
    """True if an EXERCISE region of this source still raises NotImplementedError.

    A region raises while its own `raise NotImplementedError(...)` line is still there, at the
    region's indentation, with no `return` before it: code typed above the raise, and not yet
    finished, does not count as written.
    """
    indent = None
    for line in source.splitlines():
        begin = _BEGIN.match(line)
        if begin:
            indent, returned = len(line) - len(line.lstrip()), False
        elif indent is not None and _END.match(line):
            indent = None
        elif indent is not None and len(line) - len(line.lstrip()) == indent:
            statement = line.strip()
            returned = returned or statement == "return" or statement.startswith(("return ", "return("))
            if statement.startswith("raise NotImplementedError") and not returned:
                return True
    return False


def unwritten_steps():
    """The steps whose exercise file in exercises/ is still (partly) the stub, in course order."""
    folder = _package_dir("exercises")
    return [step for step in STEPS if is_stub((folder / f"{step}.py").read_text())]


def syntax_errors():
    """{step: what Python says} for the exercise files that do not parse, e.g. a bracket left open."""
    folder, errors = _package_dir("exercises"), {}
    for step in STEPS:
        try:
            ast.parse((folder / f"{step}.py").read_text(), f"exercises/{step}.py")
        except SyntaxError as error:
            errors[step] = f"exercises/{step}.py does not parse, line {error.lineno}: {error.msg}"
    return errors


def not_written_message(step):
    """What the first unwritten region of exercises/<step>.py asks for, as a check would report it."""
    path = _package_dir("exercises") / f"{step}.py"
    stubs = [
        (node.lineno, function.name, node.exc.args[0].value)
        for function in ast.walk(ast.parse(path.read_text()))
        if isinstance(function, ast.FunctionDef)
        for node in ast.walk(function)
        if isinstance(node, ast.Raise)
        and isinstance(node.exc, ast.Call)
        and getattr(node.exc.func, "id", None) == "NotImplementedError"
        and node.exc.args
        and isinstance(node.exc.args[0], ast.Constant)
    ]
    _, function, hint = min(stubs)
    return f"not written yet (exercises/{step}.py, in {function}): {hint}"


def describe_fallback(steps):
    """One line for the learner: 'steps 04-08 are not written yet: using the reference for attention, ...'."""
    if not steps:
        return ""
    numbers = [int(STEPS[s]) for s in steps]
    runs, start = [], numbers[0]
    for previous, number in zip(numbers, numbers[1:] + [None]):
        if number != previous + 1:
            runs.append(f"{start:02d}" if start == previous else f"{start:02d}-{previous:02d}")
            start = number
    label = ", ".join(runs[:-1]) + " and " + runs[-1] if len(runs) > 1 else runs[0]
    verb = "steps {} are" if len(steps) > 1 else "step {} is"
    return f"{verb.format(label)} not written yet: using the reference for {', '.join(steps)}"


class _ReferenceInPlaceOfStub(importlib.abc.MetaPathFinder):
    """Imports `exercises.<step>` from solutions/<step>.py for the steps that are not written yet."""

    def __init__(self, steps):
        self.steps = tuple(steps)
        self.solutions = _package_dir("solutions")

    def find_spec(self, fullname, path=None, target=None):
        package, _, step = fullname.partition(".")
        if package == "exercises" and step in self.steps:
            return importlib.util.spec_from_file_location(fullname, self.solutions / f"{step}.py")
        return None


_selected = {"name": None, "module": None, "fallback": None}


def select(impl=None, default="solutions", own_step=None, export=False):
    """Make `impl` (see `resolve`) the implementation of this process and return its package.

    own_step names a step that always runs the learner's own file, written or not (a notebook's
    own exercise, so that its check cell reports the stub). export=True sets MAE_IMPL to the
    choice, so that the processes this one starts (torchrun, `!python -m mae.pretrain`) agree.
    """
    name = resolve(impl, default)
    if export:
        os.environ["MAE_IMPL"] = name
    if name == "solutions":
        module = importlib.import_module("solutions")
        fallback = ()
    else:
        fallback = tuple(step for step in unwritten_steps() if step != own_step)
        if _selected["name"] != "exercises" or _selected["fallback"] != fallback:
            _import_exercises(fallback)
        module = importlib.import_module("exercises")
    _selected.update(name=name, module=module, fallback=fallback)
    return module


def _import_exercises(fallback):
    for finder in [f for f in sys.meta_path if isinstance(f, _ReferenceInPlaceOfStub)]:
        sys.meta_path.remove(finder)
    for loaded in [m for m in sys.modules if m == "exercises" or m.startswith("exercises.")]:
        del sys.modules[loaded]
    if fallback:
        sys.meta_path.insert(0, _ReferenceInPlaceOfStub(fallback))
    importlib.import_module("exercises")


def active():
    """The implementation selected so far in this process, or None."""
    return _selected["name"]


def selected():
    """(name, package, steps running the reference), selecting from $MAE_IMPL on first use."""
    if _selected["module"] is None:
        select()
        line = describe_fallback(_selected["fallback"])
        if line:
            print(f"MAE_IMPL=exercises: {line}", file=sys.stderr)
    return _selected["name"], _selected["module"], _selected["fallback"]


def components():
    """The package whose classes the library builds: solutions, or exercises with fallbacks."""
    return selected()[1]
