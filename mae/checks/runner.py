"""Every check in one run, as `python -m mae.checks [step ...]` reports them (like rustlings): CHECKS maps each
step to its notebook, its check and the object of the implementation it takes."""

import argparse
import contextlib
import io
import sys

import torch

from .. import impl as implementation
from .. import models as ref
from ..i18n import _
from .attention import check_attention
from .block import check_block
from .classifier import check_classifier
from .harness import CheckFailed
from .masking import check_random_masking
from .model import check_decoder, check_encoder, check_mae
from .patch_embed import check_patch_embed
from .pos_embed import check_pos_embed

CHECKS = {  # step -> (its notebook, the check, which object of the implementation it takes)
    "patch_embed": (implementation.STEP_NOTEBOOKS["patch_embed"], check_patch_embed, "PatchEmbed"),
    "pos_embed": (implementation.STEP_NOTEBOOKS["pos_embed"], check_pos_embed, "get_2d_sincos_pos_embed"),
    "masking": (implementation.STEP_NOTEBOOKS["masking"], check_random_masking, "random_masking"),
    "attention": (implementation.STEP_NOTEBOOKS["attention"], check_attention, "Attention"),
    "transformer": (implementation.STEP_NOTEBOOKS["transformer"], check_block, "Block"),
    "encoder": (implementation.STEP_NOTEBOOKS["encoder"], check_encoder, "MAE"),
    "decoder": (implementation.STEP_NOTEBOOKS["decoder"], check_decoder, "MAE"),
    "model": (implementation.STEP_NOTEBOOKS["model"], check_mae, "MAE"),
    "classifier": (implementation.STEP_NOTEBOOKS["classifier"], check_classifier, "VisionTransformer"),
}


def run_checks(
    steps: list[str] | None = None, impl: str | None = None, checks: dict | None = None
) -> dict[str, str | None]:
    """Run the checks of `steps` (all by default); returns {step: error message, or None if it passes}.

    impl is "exercises" or "solutions"; None reads $MAE_IMPL, else your exercises/ (see mae.impl).
    A step you have not written yet is reported as such; the others are checked with your code,
    each on top of your other steps (the reference standing in for those not written yet). `checks`: CHECKS, or a
    test's own registry of the same form.
    """
    checks = checks or CHECKS
    name = implementation.resolve(impl, default="exercises")
    steps = steps or list(checks)
    module = ref
    unwritten = []
    if name == "exercises":
        broken = implementation.syntax_errors()
        if broken:  # nothing imports until they parse: say which, and check nothing else
            first = f"exercises/{next(iter(broken))}.py"
            unchecked = _("not checked: {file} must parse first").format(file=first)
            return {step: broken.get(step, unchecked) for step in steps}
        try:
            module = implementation.select(name).package
        except Exception as error:  # e.g. a NameError at the top of an exercise file
            message = _("your exercises do not import: {kind}: {error}").format(
                kind=type(error).__name__, error=error
            )
            return dict.fromkeys(steps, message)
        unwritten = implementation.unwritten_steps()
    results = {}
    for step in steps:
        check, attribute = checks[step][1:]
        if step in unwritten:
            results[step] = implementation.not_written_message(step)
            continue
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                check(getattr(module, attribute))
            results[step] = None
        except CheckFailed as error:
            results[step] = error.report()
        except AssertionError as error:
            results[step] = str(error)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=_("Check your exercises, step by step."))
    parser.add_argument(
        "steps",
        nargs="*",
        metavar="step",
        help=_("any of: {steps} (default: all)").format(steps=", ".join(CHECKS)),
    )
    parser.add_argument(
        "--impl", choices=implementation.IMPLEMENTATIONS, help=_("whose code: $MAE_IMPL, else exercises")
    )
    args = parser.parse_args(argv)
    unknown = [step for step in args.steps if step not in CHECKS]
    if unknown:
        parser.error(
            _("unknown step(s) {unknown}; choose from {steps}").format(
                unknown=", ".join(unknown), steps=", ".join(CHECKS)
            )
        )
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    name = implementation.resolve(args.impl, default="exercises")
    try:
        results = run_checks(args.steps or None, name)
    except implementation.NoExercisesError as error:
        print(_("error: {error}").format(error=error), file=sys.stderr)
        return 1
    print()
    for step, error in results.items():
        number = CHECKS[step][0]
        if error is None:
            print(f"  \u2713 {number} {step}")
        else:
            first, *rest = error.splitlines()
            print(f"  \u2717 {number} {step}: {first}")
            for line in rest:
                print(f"        {line}")
    passed = sum(error is None for error in results.values())
    print(
        "\n"
        + _("{passed} of {total} steps pass ({name}/).").format(passed=passed, total=len(results), name=name)
    )
    failing = [step for step, error in results.items() if error is not None]
    if failing:
        print(
            _("Next: open {name}/{step}.py (notebook {notebook}).").format(
                name=name, step=failing[0], notebook=CHECKS[failing[0]][0]
            )
        )
    return 0 if not failing else 1
