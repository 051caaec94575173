"""The Vietnamese edition keeps one term per concept: translations/vi/glossary.yaml lists, for each of the course's
main terms, the Vietnamese the translations use (`vi`) and the renderings that must not appear (`avoid`).

Every `vi` text of translations/vi/<notebook>.yaml is read as prose: code, maths and URLs are left out (they are
checked against the English by tests/notebooks/test_translations.py), emphasis marks dropped, runs of whitespace read
as one space. Phrases match case-insensitively on whole words. Needs no torch: yaml, pathlib and re only.
"""

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "translations" / "vi"
GLOSSARY = FOLDER / "glossary.yaml"

# What is not prose, as tests/notebooks/test_translations.py finds it (there, each span must equal the English).
FENCE = re.compile(r"```.*?```", re.S)
CODE = re.compile(r"`[^`]+`")
MATH = re.compile(r"\$\$.+?\$\$|\$[^$]+?\$", re.S)
URL = re.compile(r"https?://[^\s)\]>]+")


def glossary(path=GLOSSARY):
    """The glossary's entries, every value a string (BaseLoader, as the translation files are read)."""
    return yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.BaseLoader)


def translation_files(folder=FOLDER):
    return sorted(p for p in folder.glob("*.yaml") if p.name != GLOSSARY.name)


def prose(markdown):
    """The words of a markdown text: one line, code, maths and URLs replaced by a space, no `*`."""
    text = " ".join(markdown.split())
    for pattern in (FENCE, CODE, MATH, URL):
        text = pattern.sub(" ", text)
    return " ".join(text.replace("*", "").split())


def phrase_pattern(phrase):
    """`phrase` as whole words, case-insensitively, any run of whitespace inside it matching any other."""
    words = r"\s+".join(re.escape(word) for word in phrase.split())
    return re.compile(rf"(?<!\w){words}(?!\w)", re.IGNORECASE)


def texts(folder=FOLDER):
    """(file name, cell id, the prose of its `vi` text), for every cell of every translation file."""
    found = []
    for path in translation_files(folder):
        entries = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.BaseLoader) or {}
        found += [
            (path.relative_to(folder.parent.parent), cell, prose(e.get("vi", "")))
            for cell, e in entries.items()
        ]
    return found


def avoided_phrases(entries, cells):
    """(file, cell id, the words found, the glossary entry) for every avoided phrase found in a translation."""
    return [
        (name, cell, match.group(0), entry)
        for entry in entries
        for phrase in entry["avoid"]
        for name, cell, text in cells
        for match in phrase_pattern(phrase).finditer(text)
    ]


def report(found):
    return "\n".join(
        f"{name}, cell {cell}: {words!r} is to be avoided for {entry['en']!r} (use {entry['vi']!r})"
        for name, cell, words, entry in found
    )


def unused_terms(entries, cells):
    """The glossary's `vi` terms that no translation contains."""
    return [
        f"{entry['en']!r}: {entry['vi']!r} appears in no translation"
        for entry in entries
        if not any(phrase_pattern(entry["vi"]).search(text) for _, _, text in cells)
    ]


def test_the_glossary_is_a_list_of_terms():
    entries = glossary()
    assert isinstance(entries, list) and entries
    for entry in entries:
        assert isinstance(entry, dict) and set(entry) == {"en", "vi", "avoid"}, entry
        assert entry["en"].strip() and entry["vi"].strip(), entry
        assert isinstance(entry["avoid"], list) and all(p.strip() for p in entry["avoid"]), entry
    english = [entry["en"] for entry in entries]
    assert len(english) == len(set(english)), "a term is listed twice"
    # The table contradicts itself if a rendering it avoids is part of a rendering it prescribes.
    contradictions = [
        f"{entry['en']!r} avoids {phrase!r}, found in the rendering of {other['en']!r}: {other['vi']!r}"
        for entry in entries
        for phrase in entry["avoid"]
        for other in entries
        if phrase_pattern(phrase).search(other["vi"])
    ]
    assert contradictions == []


def test_no_translation_uses_an_avoided_rendering():
    found = avoided_phrases(glossary(), texts())
    assert found == [], report(found)


def test_every_glossary_term_is_used():
    unused = unused_terms(glossary(), texts())
    assert unused == [], "the glossary has drifted from the translations:\n" + "\n".join(unused)


def test_translation_files_are_found():
    assert len(translation_files()) >= 13
    assert GLOSSARY not in translation_files()


@pytest.mark.parametrize(
    "text, found",
    [
        ("Một lớp tuyến tính phân biệt các lớp.", ["lớp tuyến tính"]),  # the layer, not the classes
        ("MỘT LỚP TUYẾN TÍNH", ["LỚP TUYẾN TÍNH"]),  # any case
        ("một lớp\n    tuyến tính", ["lớp tuyến tính"]),  # across a line break
        ("một *lớp tuyến tính*", ["lớp tuyến tính"]),  # through emphasis
        ("một tầng tuyến tính, phần lớn các lớp", []),
        ("`lớp tuyến tính` và $lớp tuyến tính$", []),  # code and maths are not prose
        ("các lớp tuyến tínhx", []),  # whole words only
    ],
)
def test_the_check_matches_whole_words_in_prose(text, found):
    entry = {"en": "layer", "vi": "tầng", "avoid": ["lớp tuyến tính"]}
    hits = avoided_phrases([entry], [("f.yaml", "c1", prose(text))])
    assert [words for _, _, words, _ in hits] == found
    if found:
        assert report(hits) == f"f.yaml, cell c1: {found[0]!r} is to be avoided for 'layer' (use 'tầng')"
