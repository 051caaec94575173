"""The checks' shared tools: calling the learner's code with readable errors, comparing tensors (naming the
likely mistake, else the first wrong value), seeded reference weights copied into the learner's module, and the
optional parts (rectangular images) reported on the ✓ line."""

import contextlib
import functools
import io
import os
import re
import traceback
from pathlib import Path

import torch
from torch import nn

from ..i18n import N_, _

ATOL = 1e-5
CHECKS_FOLDER = Path(__file__).resolve().parent
# MAE_CHECKS_TRACEBACK=1 (for course authors): a failed check raises with its whole traceback through this package.
SHOW_TRACEBACK = "MAE_CHECKS_TRACEBACK"


class CheckFailed(AssertionError):
    """What a check found wrong: the message is the whole report (what is wrong, where, a hint).

    It is raised with no traceback into the checks' code, whose source holds the hints written for other
    mistakes; `yours` is the part of the traceback that is the learner's own code, when their code raised.
    Notebooks show the message and `yours` alone (mae.course registers the display), python -m mae.checks too.
    """

    def __init__(self, message, yours=""):
        super().__init__(message)
        self.yours = yours

    def report(self):
        """The message, and the learner's own traceback if their code raised."""
        return str(self) + (f"\n{self.yours}" if self.yours else "")


def learner_facing(check):
    """Make a check raise CheckFailed, which carries its message and the learner's traceback only."""

    @functools.wraps(check)
    def run(obj, *args, **kwargs):
        __tracebackhide__ = True  # noqa: F841 - IPython and pytest leave this frame out of tracebacks
        try:
            return check(obj, *args, **kwargs)
        except CheckFailed:
            raise
        except AssertionError as error:
            if os.environ.get(SHOW_TRACEBACK):
                raise
            failed = CheckFailed(str(error), _learner_traceback(error))
        raise failed.with_traceback(None) from None

    return run


def _learner_traceback(error):
    """'Where your code raised it:' and the frames of the learner's code, or "" when their code did not raise."""
    raised = error.__cause__
    if not isinstance(error, _Raised) or raised is None:
        return ""
    torch_folder = Path(torch.__file__).resolve().parent
    frames = [
        frame
        for frame in traceback.extract_tb(raised.__traceback__)
        if not Path(frame.filename).resolve().is_relative_to(CHECKS_FOLDER)
        and not Path(frame.filename).resolve().is_relative_to(torch_folder)
    ]
    if not frames:
        return ""
    lines = [_("Where your code raised it:")]
    for frame in frames:
        lines.append(
            "  "
            + _("{path}, line {line}, in {function}").format(
                path=_shown_path(frame.filename), line=frame.lineno, function=frame.name
            )
        )
        if frame.line:
            lines.append(f"    {frame.line.strip()}")
    return "\n".join(lines)


def _shown_path(filename):
    """exercises/attention.py for an exercise file, "your notebook cell" for code typed in a notebook, else the
    file's name."""
    path = Path(filename)
    if filename.startswith("<ipython-input") or "ipykernel_" in filename:
        return _("your notebook cell")
    for parent in path.resolve().parents:
        if parent.name == "exercises":
            return f"exercises/{path.name}"
    return path.name


class _Raised(AssertionError):
    """The learner's code raised an exception (an unfinished stub is not one of these)."""

    def __init__(self, message, kind):
        super().__init__(message)
        self.kind = kind


def _call(what, fn, *args, known=(), **kwargs):
    """Run the learner's code; turn an unfinished stub or a crash into an explanation.

    known: (regex, hint) pairs; an error whose text matches a regex is a known mistake of this
    call, and its hint is added to the message.
    """
    try:
        return fn(*args, **kwargs)
    except NotImplementedError as error:
        frame = traceback.extract_tb(error.__traceback__)[-1]
        where = _("{path}, in {function}").format(
            path=f"{Path(frame.filename).parent.name}/{Path(frame.filename).name}", function=frame.name
        )
        raise AssertionError(
            _("{what} reached code that is not written yet ({where}): {error}").format(
                what=what,
                where=where,
                error=_(str(error)),  # a stub's hint, in the learner's language
            )
        ) from None
    except Exception as error:  # the learner's own asserts included
        kind = type(error).__name__
        hints = [hint for pattern, hint in known if re.search(pattern, str(error))]
        message = _("{what} raised {kind}: {error}").format(what=what, kind=kind, error=error) + _hint(hints)
        raise _Raised(message, kind) from error


def _tensor(what, value):
    if isinstance(value, torch.Tensor):
        return value.detach()
    try:
        return torch.as_tensor(value)
    except Exception:
        raise AssertionError(
            _("{what} should be a tensor, got {kind}").format(what=what, kind=type(value).__name__)
        ) from None


def _close(got, want, atol=ATOL):
    return got.shape == want.shape and torch.allclose(got.double(), want.double(), atol=atol, rtol=1e-4)


# The names of the axes the checks compare along, in the catalogue (each is translated where it is shown).
AXES = (N_("image"), N_("patch"), N_("channel"), N_("pixel value"), N_("batch"), N_("token"), N_("kept token"),
        N_("class"), N_("row"), N_("column"), N_("head"), N_("query"), N_("key"))  # fmt: skip


def _hint(hints):
    """ "\nHint: ..." for the first of `hints`, or ""."""
    return "\n" + _("Hint: {hint}").format(hint=hints[0]) if hints else ""


def _where(index, axes):
    return ", ".join(f"{_(name)} {int(i)}" for name, i in zip(axes, index))


def _compare(what, got, want, axes, mistakes=(), atol=ATOL, otherwise=None):
    """Assert got == want; otherwise name a matching mistake, or locate the first wrong value.

    axes names each dimension ("batch", "patch", "channel", ...); mistakes is a list of
    (what the mistaken output would be, the hint that explains it). otherwise(got), consulted when
    no mistake matches, may return a hint for a kind of wrong output (not one exact value).
    """
    got = _tensor(what, got)
    if tuple(got.shape) != tuple(want.shape):
        hints = [hint for wrong, hint in mistakes if tuple(wrong.shape) == tuple(got.shape)]
        message = _("{what}: expected shape {expected} ({axes}), got {got}").format(
            what=what, expected=tuple(want.shape), axes=", ".join(_(a) for a in axes), got=tuple(got.shape)
        )
        raise AssertionError(message + _hint(hints))
    if _close(got, want, atol):
        return
    for wrong, hint in mistakes:
        if _close(got, wrong, atol):
            raise AssertionError(_("{what} has the wrong values. {hint}").format(what=what, hint=hint))
    hint = otherwise(got) if otherwise is not None else None
    if hint:
        raise AssertionError(_("{what} has the wrong values. {hint}").format(what=what, hint=hint))
    if want.ndim == 0:
        raise AssertionError(
            _("{what}: expected {expected:.6f}, got {got:.6f}").format(
                what=what, expected=want.item(), got=got.item()
            )
        )
    bad = ~torch.isclose(got.double(), want.double(), atol=atol, rtol=1e-4)
    first = bad.nonzero()[0].tolist()
    raise AssertionError(
        _("{what}: {wrong} of {count} values are wrong; the first at {where}: expected {expected:.5f}, got {got:.5f}").format(
            what=what, wrong=int(bad.sum()), count=bad.numel(), where=_where(first, axes),
            expected=want[tuple(first)].item(), got=got[tuple(first)].item(),
        )
    )  # fmt: skip


def _copy_weights(what, reference, yours):
    """Load the reference weights into the learner's module; names must match the official ones."""
    ours, theirs = reference.state_dict(), yours.state_dict()
    missing = [k for k in ours if k not in theirs]
    extra = [k for k in theirs if k not in ours]
    if missing or extra:
        raise AssertionError(
            _("{what}: parameter names differ from the official ones (the checkpoints need them): missing "
              "{missing}, unexpected {unexpected}").format(what=what, missing=missing[:6], unexpected=extra[:6])
        )  # fmt: skip
    with torch.no_grad():
        for key, value in ours.items():
            target = theirs[key]
            if target.numel() != value.numel():
                raise AssertionError(
                    _("{what}: {key} should have shape {expected}, got {got}").format(
                        what=what, key=key, expected=tuple(value.shape), got=tuple(target.shape)
                    )
                )
            target.copy_(value.reshape(target.shape))  # a Linear on unfolded patches is fine too


def _randomise(module, seed):
    """Give the reference random weights, random biases and random LayerNorm scales and shifts.

    MAE initialises biases to 0 and LayerNorms to the identity, where norm1 used in place of norm2
    (or a bias added twice) changes nothing. A seeded generator, not the global one, keeps every
    expected value, and so every message, the same from run to run. The fixed sin-cos position
    tables are kept: they are not learned in MAE.
    """
    generator = torch.Generator().manual_seed(seed)

    def draw(tensor, scale, shift=0.0):
        tensor.copy_(shift + scale * torch.randn(tensor.shape, generator=generator))

    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                draw(m.weight, m.weight[0].numel() ** -0.5)  # unit-sized outputs for unit-sized inputs
                if m.bias is not None:
                    draw(m.bias, 0.5)
            elif isinstance(m, nn.LayerNorm):
                draw(m.weight, 0.5, shift=1.0)
                draw(m.bias, 0.5)
            for name in ("cls_token", "mask_token"):
                if isinstance(getattr(m, name, None), nn.Parameter):
                    draw(getattr(m, name), 1.0)
    return module


def _ok(message):
    print(f"\u2713 {message}")


def _inputs(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _noise(n, length, seed=1):
    return torch.rand(n, length, generator=torch.Generator().manual_seed(seed))


def _optional(label, run):
    """Check an extension the official code lacks (rectangular images, other channel counts).

    Code that does not accept it is not wrong: the part is skipped, and the returned note, added
    to the ✓ line, says so. Code that accepts it but gets it wrong still passes the step (the
    official code is square-only), with a second line saying what is wrong.
    """
    try:
        run()
    except _Raised as error:
        return _("; optional check with {label} skipped (your code raised {kind}; fine, the official code is "
                 "square-only)").format(label=label, kind=error.kind)  # fmt: skip
    except AssertionError as error:
        return "\n  ! " + _(
            "optional, not needed by MAE: your code accepts {label} but gets it wrong: {error}"
        ).format(label=label, error=error)
    return _("; {label} too").format(label=label)


@contextlib.contextmanager
def _other_attention_path(module):
    """Flip every `fused_attn` flag in `module`; yields a label, or None when there is none to flip.

    An Attention with this flag (timm's and the reference's) has two code paths, the fused
    F.scaled_dot_product_attention and the explicit softmax, and both must be right.
    """
    flagged = [m for m in module.modules() if isinstance(getattr(m, "fused_attn", None), bool)]
    saved = [m.fused_attn for m in flagged]
    for m in flagged:
        m.fused_attn = not m.fused_attn
    try:
        yield _("with fused_attn={flag} in every Attention").format(flag=not saved[0]) if flagged else None
    finally:
        for m, value in zip(flagged, saved):
            m.fused_attn = value


def _same_on_other_path(what, yours, run, want, axes):
    """Run `run()` again on the other attention path of `yours`; it must give `want` too."""
    with _other_attention_path(yours) as path:
        if path is None:
            return
        explicit = "=False" in path  # the flag's own spelling, the same in every language
        try:
            _compare(f"{what} {path}", run(), want, axes)
        except AssertionError as error:
            which = _("explicit path (fused_attn=False)") if explicit else _("fused path (fused_attn=True)")
            hint = _("your Attention's {which} gives other results; check_attention says where").format(
                which=which
            )
            raise AssertionError(f"{error}{_hint([hint])}") from None


def _first_line(error):
    """The first line of an error's message, ending in a full stop (or its own ? or !)."""
    line = str(error).splitlines()[0].rstrip(". ")
    return line if line.endswith(("?", "!")) else line + "."


def _earlier_step_must_pass(check, obj, what, runner, step):
    """Run an earlier step's check quietly; if it fails, blame that step, quoting its first line."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            check(obj)
    except AssertionError as error:
        raise AssertionError(
            _(
                "{what} is not right yet, and {runner} runs it: {first} Fix step {step} first ({check})"
            ).format(what=what, runner=runner, first=_first_line(error), step=step, check=check.__name__)
        ) from None
