"""Whose code the model components come from: the learner's `exercises/` or the reference in `mae.models`.

One switch, resolved here and read in one place (mae.models.factories.components): MAE_IMPL=exercises or
MAE_IMPL=solutions (a notebook's `impl` parameter and `python -m mae.checks --impl` set the same thing). When it
is not set, the course (the notebooks, `python -m mae.checks`) runs the learner's code and everything else
(`import mae`, the training commands) runs the reference.

The learner's `exercises/` lives in the course's checkout, beside the installed `mae` folder of an editable
install (`pip install -e .`); it is not an installed package. Selecting it puts a finder for the name `exercises`
in front of sys.meta_path. A step that is not written yet (one of its EXERCISE regions still only raises
NotImplementedError) runs the reference instead: mae/models/<step>.py is loaded in the stub's place, inside the
`exercises` package, so that it builds on the steps the learner did write. A step that is written but wrong is
never replaced: its check says what is wrong.

Imports nothing of mae but its language (mae.i18n; the factories import this module).
"""

import ast
import importlib
import importlib.abc
import importlib.util
import os
import re
import sys
from pathlib import Path
from typing import NamedTuple

from .i18n import _

IMPLEMENTATIONS = ("exercises", "solutions")
# The course's steps: exercise file -> notebook number, in the order the course builds them.
STEP_NOTEBOOKS = {
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
# The reference step files (what solutions/ copies), and the checkout whose exercises/ the learner edits.
REFERENCE_FOLDER = Path(__file__).resolve().parent / "models"
CHECKOUT = Path(__file__).resolve().parent.parent

_BEGIN = re.compile(r"^\s*# EXERCISE:")
_END = re.compile(r"^\s*# END EXERCISE\s*$")


class NoExercisesError(FileNotFoundError):
    """MAE_IMPL=exercises where there are none: this mae is installed, not in the course's checkout."""


def exercises_folder():
    """The checkout's exercises/ folder; outside a checkout (an installed wheel) an error that says so."""
    folder = CHECKOUT / "exercises"
    if not (folder / "__init__.py").is_file():
        raise NoExercisesError(
            _("MAE_IMPL=exercises runs your exercises/, which live in the course's checkout, and this mae is not "
              "in one (it is installed in {where}, with no exercises/ beside it): there are no exercises to "
              "run. Clone the course and install it from there with `pip install -e .`, or use "
              "MAE_IMPL=solutions for the reference.").format(where=CHECKOUT)
        )  # fmt: skip
    return folder


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
    folder = exercises_folder()
    return [step for step in STEP_NOTEBOOKS if is_stub((folder / f"{step}.py").read_text())]


def syntax_errors():
    """{step: what Python says} for the exercise files that do not parse, e.g. a bracket left open."""
    folder, errors = exercises_folder(), {}
    for step in STEP_NOTEBOOKS:
        try:
            ast.parse((folder / f"{step}.py").read_text(), f"exercises/{step}.py")
        except SyntaxError as error:
            errors[step] = _("exercises/{step}.py does not parse, line {line}: {message}").format(
                step=step, line=error.lineno, message=error.msg
            )
    return errors


def not_written_message(step):
    """What the first unwritten region of exercises/<step>.py asks for, as a check would report it."""
    path = exercises_folder() / f"{step}.py"
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
    function, hint = min(stubs)[1:]
    return _("not written yet (exercises/{step}.py, in {function}): {hint}").format(
        step=step,
        function=function,
        hint=_(hint),  # the hint in the learner's language, where catalogued
    )


def describe_fallback(steps):
    """One line for the learner: 'steps 04-08 are not written yet: using the reference for attention, ...'."""
    if not steps:
        return ""
    numbers = [int(STEP_NOTEBOOKS[s]) for s in steps]
    runs, start = [], numbers[0]
    for previous, number in zip(numbers, numbers[1:] + [None]):
        if number != previous + 1:
            runs.append(f"{start:02d}" if start == previous else f"{start:02d}-{previous:02d}")
            start = number
    label = (
        _("{runs} and {last}").format(runs=", ".join(runs[:-1]), last=runs[-1]) if len(runs) > 1 else runs[0]
    )
    if len(steps) > 1:
        line = _("steps {numbers} are not written yet: using the reference for {steps}")
    else:
        line = _("step {numbers} is not written yet: using the reference for {steps}")
    return line.format(numbers=label, steps=", ".join(steps))


class _ExercisesFinder(importlib.abc.MetaPathFinder):
    """Imports `exercises` from the checkout's exercises/, and `exercises.<step>` from mae/models/<step>.py for
    the steps not written yet (the others from exercises/, by the usual path search of the package)."""

    def __init__(self, folder, stand_ins):
        self.folder, self.stand_ins = folder, tuple(stand_ins)

    def find_spec(self, fullname, path=None, target=None):
        package, _dot, step = fullname.partition(".")
        if package != "exercises":
            return None
        if not step:
            init = self.folder / "__init__.py"
            return importlib.util.spec_from_file_location(
                fullname, init, submodule_search_locations=[str(self.folder)]
            )
        if step in self.stand_ins:
            return importlib.util.spec_from_file_location(fullname, REFERENCE_FOLDER / f"{step}.py")
        return None


class Selection(NamedTuple):
    """An implementation made the process's: its name, the learner's package (None for the reference, mae.models)
    and the steps whose reference stands in for a stub."""

    name: str
    package: object = None
    stand_ins: tuple = ()


_selected = Selection(None)


def select(impl=None, default="solutions", own_step=None, export=False) -> Selection:
    """Make `impl` (see `resolve`) the implementation of this process, and return the Selection.

    own_step names a step that always runs the learner's own file, written or not (a notebook's
    own exercise, so that its check cell reports the stub). export=True sets MAE_IMPL to the
    choice, so that the processes this one starts (torchrun, `!python -m mae.pretrain`) agree.
    """
    global _selected
    name = resolve(impl, default)
    module, fallback = None, ()
    if name == "exercises":
        fallback = tuple(step for step in unwritten_steps() if step != own_step)
        if _selected.name != "exercises" or _selected.stand_ins != fallback:
            _import_exercises(fallback)
        module = importlib.import_module("exercises")
    if export:
        os.environ["MAE_IMPL"] = name
    _selected = Selection(name, module, fallback)
    return _selected


def _import_exercises(fallback):
    for finder in [f for f in sys.meta_path if isinstance(f, _ExercisesFinder)]:
        sys.meta_path.remove(finder)
    for loaded in [m for m in sys.modules if m == "exercises" or m.startswith("exercises.")]:
        del sys.modules[loaded]
    sys.meta_path.insert(0, _ExercisesFinder(exercises_folder(), fallback))
    importlib.import_module("exercises")


def active():
    """The implementation selected so far in this process ("exercises" or "solutions"), or None."""
    return _selected.name


def selected() -> Selection:
    """The process's Selection (a tuple: name, package, stand_ins), made from $MAE_IMPL on first use (and the
    stand-ins said, on stderr)."""
    if _selected.name is None:
        line = describe_fallback(select().stand_ins)
        if line:
            print(f"MAE_IMPL=exercises: {line}", file=sys.stderr)
    return _selected


def selected_name():
    """The name of the process's implementation, "exercises" or "solutions" (selected from $MAE_IMPL if none yet)."""
    return selected().name


def learner_package():
    """The learner's `exercises` package (stand-ins included) when it is selected, else None (the reference)."""
    return selected().package
