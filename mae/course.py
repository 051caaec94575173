"""Small helpers the course notebooks share: whose code runs, where the notebook runs, and a quick training loop."""

import os
from pathlib import Path

import torch

from . import i18n, models
from . import impl as implementation
from .checks.harness import SHOW_TRACEBACK, CheckFailed
from .i18n import _


def use(impl=None, seed=0, exercise=None, lang=None):
    """Select whose code this notebook runs, seed everything, and say which it is.

    impl is "exercises" (your code, the default in the course) or "solutions" (the reference);
    None reads $MAE_IMPL. The whole package follows the choice (see mae.impl): with your code,
    the steps you have not written yet run the reference, except this notebook's own `exercise`,
    whose check has to see your stub. Returns the package: `code.PatchEmbed`, `code.MAE`, ... (your `exercises`,
    or the reference, mae.models).

    A notebook started in a translation folder, notebooks/<lang>/, is moved to notebooks/, where the English one
    runs, so that the code both share finds the same files (`../checkpoints/...`, `../output/...`), and the
    package speaks that language (mae.i18n): the checks, hints and notices. `lang` ("en", "vi") chooses it
    instead (papermill: -p lang vi); $MAE_LANG is the default outside a translation folder.
    """
    global _started_in
    # A rerun of this cell runs in notebooks/, where the first run moved it: keep the folder it started in.
    _started_in = folder_language() or _started_in
    i18n.set_language(lang or _started_in)  # None: $MAE_LANG, else English
    run_in_notebooks_folder()
    show_failed_checks_briefly()
    selection = implementation.select(impl, default="exercises", own_step=exercise, export=True)
    torch.manual_seed(seed)
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    name = selection.name
    if name == "exercises":
        print(_("Using your code in exercises/ (impl={name!r})").format(name=name))
    else:
        print(_("Using the reference code in solutions/ (impl={name!r})").format(name=name))
    line = implementation.describe_fallback(selection.stand_ins)
    if line:
        print(line)
    return selection.package or models


def show_failed_checks_briefly():
    """In IPython (Jupyter, Colab), a failed check shows its report, not a traceback through mae.checks, whose
    source holds the hints for other mistakes (MAE_CHECKS_TRACEBACK=1 shows the whole traceback)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None and not os.environ.get(SHOW_TRACEBACK):
        shell.set_custom_exc((CheckFailed,), _show_failed_check)


def _show_failed_check(shell, etype, value, tb, tb_offset=None):
    """Show a CheckFailed as the cell's error output: the report, its first line in red, and no traceback."""
    first, *rest = value.report().splitlines()
    lines = [f"\x1b[1;31m\u2717 {first}\x1b[0m", *rest]
    # What IPython's own tracebacks go through (in ipykernel: an error output).
    shell._showtraceback(etype, value, lines)
    return lines


NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"  # the course's, in a checkout
_started_in = None  # the translation folder this kernel's notebook started in, once use() has moved it


def folder_language():
    """ "vi" for a notebook started in notebooks/vi/ (any translation folder of this course), else None."""
    cwd = Path.cwd().resolve()
    return cwd.name if cwd.parent == NOTEBOOKS and cwd.name in i18n.LANGUAGES else None


def run_in_notebooks_folder():
    """If the working directory is a sub-folder of this course's notebooks/ (a translation), move to notebooks/."""
    if Path.cwd().resolve().parent == NOTEBOOKS:
        os.chdir(NOTEBOOKS)


def fit_batch(model, imgs, steps=150, lr=1.5e-3, mask_ratio=0.75, seed=0, log_every=10):
    """Train `model` on the fixed batch `imgs` with AdamW (betas 0.9, 0.95); returns the loss every `log_every` steps.

    A few hundred steps on a handful of images, to watch a model learn inside a notebook (notebook 08). Not
    pretraining: the real engine, with data, schedules, checkpoints and distributed training, is mae.pretrain.
    """
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.05)
    model.train()
    losses = []
    for step in range(steps):
        loss = model(imgs, mask_ratio=mask_ratio)[0]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % log_every == 0 or step == steps - 1:
            losses.append((step, loss.item()))
    model.eval()
    return losses


# Where the course lives, for the Colab badges and install cell of every notebook. A fork sets its own URL
# here and runs `python scripts/sync_notebooks.py`, which rewrites those cells (CI fails when they drift).
REPOSITORY = "https://github.com/mae-from-scratch/mae-from-scratch"
