"""The learner's language for what the package says to them: the checks, their hints, the notices of whose code
runs. Identifiers, flags and the official log formats stay English.

Messages go through Python's gettext: `_("text with {name} fields").format(name=...)` in the code, the Vietnamese
in translations/vi/messages.po (what a translator edits), compiled to mae/locale/vi/LC_MESSAGES/mae.mo by
`python scripts/translate_messages.py`; CI fails when a message has no Vietnamese entry or the compiled file is
stale. `N_` marks a message kept in a constant, translated where it is shown (`_(constant)`). Notebooks call
`tr` (the same function: IPython rebinds `_` to the last output), whose messages the script extracts from the
English notebooks' code cells.

The language: set_language(), else $MAE_LANG, else English. mae.course.use() sets it from the notebook's folder
(a notebook started in notebooks/vi/ speaks Vietnamese) or its `lang` parameter. Imports nothing of mae.
"""

import functools
import gettext
import os
from pathlib import Path

LOCALE = Path(__file__).resolve().parent / "locale"
LANGUAGES = ("en", "vi")
DOMAIN = "mae"
_chosen = None


def set_language(lang):
    """Speak `lang` ("en" or "vi") from now on; None goes back to $MAE_LANG, else English."""
    global _chosen
    if lang is not None and lang not in LANGUAGES:
        raise ValueError(f"lang must be one of {', '.join(LANGUAGES)}, got {lang!r}")
    _chosen = lang


def language():
    """The language in use: set_language's, else $MAE_LANG's (when it is one of LANGUAGES), else "en"."""
    if _chosen is not None:
        return _chosen
    wanted = os.environ.get("MAE_LANG", "en")
    return wanted if wanted in LANGUAGES else "en"


@functools.cache
def _catalogue(lang):
    return gettext.translation(DOMAIN, LOCALE, languages=[lang], fallback=True)


def _(message):
    """`message` in the language in use (itself in English, or where the catalogue has no entry for it)."""
    lang = language()
    if lang == "en" or not message:  # gettext("") is the catalogue's header, not a translation
        return message
    return _catalogue(lang).gettext(message)


def tr(message):
    """`_` under a name a notebook can import: in IPython `_` is the last cell's output, rebound after every cell."""
    return _(message)


def N_(message):
    """Mark a message for the catalogue without translating it yet (a constant, translated where it is shown)."""
    return message
