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
    lines = ["Where your code raised it:"]
    for frame in frames:
        lines.append(f"  {_shown_path(frame.filename)}, line {frame.lineno}, in {frame.name}")
        if frame.line:
            lines.append(f"    {frame.line.strip()}")
    return "\n".join(lines)


def _shown_path(filename):
    """exercises/attention.py for an exercise file, "your notebook cell" for code typed in a notebook, else the
    file's name."""
    path = Path(filename)
    if filename.startswith("<ipython-input") or "ipykernel_" in filename:
        return "your notebook cell"
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
        where = f"{Path(frame.filename).parent.name}/{Path(frame.filename).name}, in {frame.name}"
        raise AssertionError(f"{what} reached code that is not written yet ({where}): {error}") from None
    except Exception as error:  # the learner's own asserts included
        kind = type(error).__name__
        hints = [hint for pattern, hint in known if re.search(pattern, str(error))]
        message = f"{what} raised {kind}: {error}" + (f"\nHint: {hints[0]}" if hints else "")
        raise _Raised(message, kind) from error


def _tensor(what, value):
    if isinstance(value, torch.Tensor):
        return value.detach()
    try:
        return torch.as_tensor(value)
    except Exception:
        raise AssertionError(f"{what} should be a tensor, got {type(value).__name__}") from None


def _close(got, want, atol=ATOL):
    return got.shape == want.shape and torch.allclose(got.double(), want.double(), atol=atol, rtol=1e-4)


def _where(index, axes):
    return ", ".join(f"{name} {int(i)}" for name, i in zip(axes, index))


def _compare(what, got, want, axes, mistakes=(), atol=ATOL, otherwise=None):
    """Assert got == want; otherwise name a matching mistake, or locate the first wrong value.

    axes names each dimension ("batch", "patch", "channel", ...); mistakes is a list of
    (what the mistaken output would be, the hint that explains it). otherwise(got), consulted when
    no mistake matches, may return a hint for a kind of wrong output (not one exact value).
    """
    got = _tensor(what, got)
    if tuple(got.shape) != tuple(want.shape):
        hints = [hint for wrong, hint in mistakes if tuple(wrong.shape) == tuple(got.shape)]
        message = f"{what}: expected shape {tuple(want.shape)} ({', '.join(axes)}), got {tuple(got.shape)}"
        raise AssertionError(message + (f"\nHint: {hints[0]}" if hints else ""))
    if _close(got, want, atol):
        return
    for wrong, hint in mistakes:
        if _close(got, wrong, atol):
            raise AssertionError(f"{what} has the wrong values. {hint}")
    hint = otherwise(got) if otherwise is not None else None
    if hint:
        raise AssertionError(f"{what} has the wrong values. {hint}")
    if want.ndim == 0:
        raise AssertionError(f"{what}: expected {want.item():.6f}, got {got.item():.6f}")
    bad = ~torch.isclose(got.double(), want.double(), atol=atol, rtol=1e-4)
    first = bad.nonzero()[0].tolist()
    raise AssertionError(
        f"{what}: {int(bad.sum())} of {bad.numel()} values are wrong; the first at "
        f"{_where(first, axes)}: expected {want[tuple(first)].item():.5f}, got {got[tuple(first)].item():.5f}"
    )


def _copy_weights(what, reference, yours):
    """Load the reference weights into the learner's module; names must match the official ones."""
    ours, theirs = reference.state_dict(), yours.state_dict()
    missing = [k for k in ours if k not in theirs]
    extra = [k for k in theirs if k not in ours]
    if missing or extra:
        raise AssertionError(
            f"{what}: parameter names differ from the official ones (the checkpoints need them): "
            f"missing {missing[:6]}, unexpected {extra[:6]}"
        )
    with torch.no_grad():
        for key, value in ours.items():
            target = theirs[key]
            if target.numel() != value.numel():
                raise AssertionError(
                    f"{what}: {key} should have shape {tuple(value.shape)}, got {tuple(target.shape)}"
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
        return f"; optional check with {label} skipped (your code raised {error.kind}; fine, the official code is square-only)"
    except AssertionError as error:
        return f"\n  ! optional, not needed by MAE: your code accepts {label} but gets it wrong: {error}"
    return f"; {label} too"


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
        yield f"with fused_attn={not saved[0]} in every Attention" if flagged else None
    finally:
        for m, value in zip(flagged, saved):
            m.fused_attn = value


def _same_on_other_path(what, yours, run, want, axes):
    """Run `run()` again on the other attention path of `yours`; it must give `want` too."""
    with _other_attention_path(yours) as path:
        if path is None:
            return
        try:
            _compare(f"{what} {path}", run(), want, axes)
        except AssertionError as error:
            which = "explicit path (fused_attn=False)" if "=False" in path else "fused path (fused_attn=True)"
            raise AssertionError(
                f"{error}\nHint: your Attention's {which} gives other results; check_attention says where"
            ) from None


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
            f"{what} is not right yet, and {runner} runs it: {_first_line(error)} "
            f"Fix step {step} first ({check.__name__})"
        ) from None
