"""The message catalogue of what the package says to learners (mae.i18n): extracted from the code, translated in
translations/<lang>/messages.po, compiled to mae/locale/<lang>/LC_MESSAGES/mae.mo. Babel does the reading and
writing (the standard gettext formats); this script keeps the three in step.

    python scripts/translate_messages.py           # extract, update each .po (new messages empty), compile
    python scripts/translate_messages.py --check   # CI: fail if anything is stale or a message lacks a translation
    python scripts/translate_messages.py --todo    # list the messages that lack a translation, per language

A translation must keep its message's {fields} (a missing or misspelt field would raise, or show the wrong value).
"""

import argparse
import ast
import gettext
import io
import json
import re
import string
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "translations" / "messages.pot"
LANGUAGES = ("vi",)
KEYWORDS = {"_": None, "N_": None}
NOTEBOOK_KEYWORDS = {"tr": None}  # mae.i18n.tr: a notebook cannot use _ (IPython's last output)
EXERCISE = re.compile(r"^\s*# EXERCISE: (?P<hint>.+?)\s*$")  # as scripts/make_exercises.py reads them


def po_path(lang):
    return ROOT / "translations" / lang / "messages.po"


def mo_path(lang):
    return ROOT / "mae" / "locale" / lang / "LC_MESSAGES" / "mae.mo"


def extract():
    """Every _("...") and N_("...") in mae/, every `# EXERCISE: <hint>` of the reference (the hints of the
    exercise stubs, scripts/make_exercises.py) and every tr("...") in the English notebooks' code cells (the
    Vietnamese ones run the same code), in a catalogue with no dates or line numbers (so it only changes when a
    message does)."""
    catalog = Catalog(project="mae-from-scratch", charset="utf-8")
    for filename, _lineno, message, comments, _context in extract_from_dir(
        ROOT / "mae", method_map=[("**.py", "python")], keywords=KEYWORDS, comment_tags=("TRANSLATORS:",)
    ):
        catalog.add(message, locations=[(f"mae/{filename}", None)], auto_comments=comments)
    for path in sorted((ROOT / "mae" / "models").glob("*.py")):
        for line in path.read_text().splitlines():
            if begin := EXERCISE.match(line):
                catalog.add(begin["hint"], locations=[(f"mae/models/{path.name}", None)],
                            auto_comments=["an exercise hint: the stub's comment and NotImplementedError"])  # fmt: skip
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for message in notebook_messages(path):
            catalog.add(message, locations=[(f"notebooks/{path.name}", None)],
                        auto_comments=["a notebook's figure: a title, an axis, a legend or a row of a table"])  # fmt: skip
    return catalog


def notebook_messages(path):
    """The tr("...") messages of a notebook's code cells, in order, read with ast (so a tr() inside an f-string is
    found too; IPython's %magic and !shell lines, which are not Python, are blanked first). A tr() of anything
    but one literal string is an error: the catalogue could not hold its message."""
    messages = []
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        lines = [
            "" if line.lstrip().startswith(("%", "!")) else line
            for line in "".join(cell["source"]).splitlines()
        ]
        found = []
        for node in ast.walk(ast.parse("\n".join(lines))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in NOTEBOOK_KEYWORDS
            ):
                literal = node.args[0] if len(node.args) == 1 and not node.keywords else None
                if not (isinstance(literal, ast.Constant) and isinstance(literal.value, str)):
                    raise ValueError(f"{path.name}, cell {cell.get('id')}: {ast.unparse(node)} is not tr() of one "
                                     "literal string, which the catalogue needs")  # fmt: skip
                found.append((node.lineno, node.col_offset, literal.value))
        messages += [message for *_, message in sorted(found)]  # in the cell's order
    return messages


def header(catalog):
    """The header an editor (Poedit, Lokalize, Weblate) reads, the language and encoding: fixed text, with no dates
    or tool versions, so that the file changes only when a message does."""
    language = f'"Language: {catalog.locale}\\n"\n' if catalog.locale else ""
    return (
        "# The messages of mae-from-scratch (mae.i18n). Edit the msgstr lines; then run\n"
        "# python scripts/translate_messages.py, which keeps this file in step with the code.\n"
        'msgid ""\nmsgstr ""\n"Project-Id-Version: mae-from-scratch\\n"\n'
        f'{language}"MIME-Version: 1.0\\n"\n"Content-Type: text/plain; charset=UTF-8\\n"\n'
        '"Content-Transfer-Encoding: 8bit\\n"\n\n'
    )


def to_bytes(catalog, **options):
    out = io.BytesIO()
    write_po(out, catalog, omit_header=True, sort_output=True, width=0, **options)
    return header(catalog).encode() + out.getvalue()


def updated(template, lang):
    """The .po of `lang` with the template's messages: translations kept, new messages empty, gone ones dropped."""
    path = po_path(lang)
    if path.exists():
        with path.open("rb") as file:
            old = read_po(file, locale=lang)
    else:
        old = Catalog(locale=lang)
    new = Catalog(locale=lang, project="mae-from-scratch", charset="utf-8")
    for message in template:
        if not message.id:
            continue
        before = old.get(message.id)
        new.add(message.id, before.string if before else "", locations=message.locations,
                auto_comments=message.auto_comments, user_comments=before.user_comments if before else (),
                flags=("fuzzy",) if before and before.fuzzy else ())  # fmt: skip
    return new


def compiled(catalog):
    out = io.BytesIO()
    write_mo(out, catalog)
    return out.getvalue()


def translations_in(mo_bytes):
    """{message: translation} of a compiled catalogue, less its header (dates and tool versions, which differ
    from one compilation to the next without the translations changing)."""
    if mo_bytes is None:
        return None
    catalogue = gettext.GNUTranslations(io.BytesIO(mo_bytes))._catalog
    return {k: v for k, v in catalogue.items() if k}


def fields(text):
    """The {fields} of a format string as (name, conversion, format spec), sorted; None if it does not parse (a
    stray brace would raise in str.format where the learner reads the message)."""
    try:
        return sorted((name, conversion or "", spec or "") for _, name, spec, conversion in string.Formatter().parse(text)
                      if name is not None)  # fmt: skip
    except ValueError:
        return None


def problems(catalog):
    """Messages with no translation (a fuzzy one counts as none), and translations whose {fields}, with their
    conversions and format specs, are not the message's, or that do not parse, or that span another number of
    lines (an exercise hint is one comment line)."""
    missing, wrong = [], []
    for message in catalog:
        if not message.id:
            continue
        if not message.string or message.fuzzy:
            missing.append(message.id)
        elif (
            fields(message.string) is None
            or fields(message.string) != fields(message.id)
            or (message.string.count("\n") != message.id.count("\n"))
        ):
            wrong.append(message.id)
    return missing, wrong


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="change nothing; fail if anything is out of step"
    )
    parser.add_argument("--todo", action="store_true", help="list the messages without a translation")
    args = parser.parse_args(argv)
    template = extract()
    failures = []
    wanted = {TEMPLATE: to_bytes(template)}
    for lang in LANGUAGES:
        catalog = updated(template, lang)
        wanted[po_path(lang)] = to_bytes(catalog)
        wanted[mo_path(lang)] = compiled(catalog)
        missing, fields = problems(catalog)
        if args.todo or args.check:
            for text in missing:
                print(f"{lang}: no translation: {text!r}")
            for text in fields:
                print(f"{lang}: the translation's {{fields}} or lines differ from the message's: {text!r}")
        if missing or fields:
            failures.append(
                f"{lang}: {len(missing)} messages without a translation, {len(fields)} with other fields"
            )
    if args.todo:
        return 0
    for path, content in wanted.items():
        have = path.read_bytes() if path.exists() else None
        if have == content or (path.suffix == ".mo" and translations_in(have) == translations_in(content)):
            continue
        if args.check:
            failures.append(
                f"{path.relative_to(ROOT)} is out of step: run python scripts/translate_messages.py"
            )
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            print(f"wrote {path.relative_to(ROOT)}")
    if failures:
        print("\n".join(failures), file=sys.stderr)
        if args.check or any("without a translation" in f or "other fields" in f for f in failures):
            print("(translate the messages in translations/<lang>/messages.po, then run python "
                  "scripts/translate_messages.py; --todo lists them)", file=sys.stderr)  # fmt: skip
        return 1
    print(f"{len(template)} messages, translated into {', '.join(LANGUAGES)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
