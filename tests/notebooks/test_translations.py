"""The Vietnamese notebooks (notebooks/vi/, scripts/translate_notebooks.py): generated from the English ones,
in step with them, same formulas.

The drift tests edit copies in a temporary folder, never the real notebooks.
"""

import io
import json
import re
import shutil
import sys
import tokenize

import pytest
from helpers import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import sync_notebooks  # noqa: E402
import translate_notebooks as translation  # noqa: E402

ENGLISH = translation.english_notebooks(ROOT)
VI = ROOT / "notebooks" / "vi"


def markdown_pairs(english):
    """(cell id, English text, Vietnamese text) of each markdown cell, with the Colab badges left out."""
    vi_cells = {c["id"]: c for c in json.loads((VI / english.name).read_text())["cells"]}
    return [
        (
            cell["id"],
            translation.BADGE.sub("", translation.text(cell)),
            translation.BADGE.sub("", translation.text(vi_cells[cell["id"]])),
        )
        for cell in json.loads(english.read_text())["cells"]
        if cell["cell_type"] == "markdown"
    ]


def test_every_notebook_is_translated_and_in_step():
    assert translation.check(ROOT) == []
    assert translation.main(["--check"]) == 0
    assert sorted(p.name for p in VI.glob("*.ipynb")) == [p.name for p in ENGLISH]


def code_cells(notebook, vietnamese=False):
    """What both editions share of each code cell: its id, source and tags (not the outputs of its own run); in
    the Vietnamese edition the parameters cell says lang = "vi"."""

    def source(cell):
        if vietnamese and "parameters" in cell["metadata"].get("tags", []):
            return translation.in_this_language(translation.text(cell))
        return translation.text(cell)

    return [
        (c["id"], source(c), c["metadata"].get("tags")) for c in notebook["cells"] if c["cell_type"] == "code"
    ]


@pytest.mark.parametrize("english", ENGLISH, ids=lambda p: p.name[:2])
def test_same_code_run_in_vietnamese_and_a_vietnamese_text(english):
    en, vi = (json.loads(p.read_text()) for p in (english, VI / english.name))
    shared = {k: v for k, v in vi["metadata"].items() if k not in ("mae", "widgets")}
    assert shared == {k: v for k, v in en["metadata"].items() if k != "widgets"}
    assert code_cells(vi) == code_cells(en, vietnamese=True)
    parameters = next(c for c in vi["cells"] if "parameters" in c["metadata"].get("tags", []))
    assert 'lang = "vi"  #' in translation.text(parameters)  # Vietnamese wherever it runs: Colab, papermill
    assert vi["metadata"]["mae"][translation.EXECUTED] == translation.code_hash(vi)  # run on this code
    use_cell = next(c for c in vi["cells"] if c["cell_type"] == "code" and "use(impl" in translation.text(c))
    said = "".join("".join(o.get("text", [])) for o in use_cell["outputs"])
    assert said.startswith("Đang dùng") and "Using" not in said, said  # the notice, in Vietnamese
    assert sync_notebooks.badge(f"notebooks/vi/{english.name}") in translation.text(vi["cells"][0])
    for cell_id, en_text, vi_text in markdown_pairs(english):
        assert vi_text != en_text and re.search(
            "[ăâđêôơưạảấầẩẫậắằẳẵặẹẻẽếềểễệịỉọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ]", vi_text
        ), cell_id
    text = "\n".join(translation.text(c) for c in vi["cells"])
    assert "**Câu hỏi.**" in text and "<summary>Đáp án</summary>" in text and "**Question.**" not in text


# What a translation must keep exactly as the English cell has it: fenced code, inline code, LaTeX, URLs, numbers.
FENCE = re.compile(r"```.*?```", re.S)
CODE = re.compile(r"`[^`\n]+`")
MATH = re.compile(r"\$\$.+?\$\$|\$[^$\n]+?\$", re.S)
URL = re.compile(r"https?://[^\s)\]>]+")
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def without_comments(fence):
    """A fenced block's code with its comments set aside (a translation may translate them): Python's tokens for
    Python, and for a shell, what precedes a `#` that starts a word."""
    first, _, body = fence.strip("`").partition("\n")
    language = first.strip()
    if language in ("python", "py", "ipython"):
        try:
            tokens = tokenize.generate_tokens(io.StringIO(body).readline)
            kept = [
                t.string for t in tokens if t.type not in (tokenize.COMMENT, tokenize.NL, tokenize.INDENT)
            ]
            return language, tuple(kept)
        except (tokenize.TokenError, IndentationError, SyntaxError):
            pass
    lines = (re.sub(r"(^|\s)#.*$", "", line).rstrip() for line in body.splitlines())
    return language, tuple(line for line in lines if line)


def without_text(formula):
    """A formula with the contents of its \\text{...} set aside (words a translation may translate)."""
    return re.sub(r"\\text\{[^{}]*\}", r"\\text{}", formula)


def exact_parts(markdown):
    """{kind: set of spans}; each kind is taken out of the text before the next is looked for. Fenced code is
    compared by its code, comments aside, and formulas with their \\text{} words aside."""
    parts = {}
    for kind, pattern in [("fenced code", FENCE), ("inline code", CODE), ("maths", MATH), ("URL", URL)]:
        found = pattern.findall(markdown)
        parts[kind] = {without_comments(f) for f in found} if kind == "fenced code" else set(found)
        if kind == "maths":
            parts[kind] = {without_text(f) for f in found}
        markdown = pattern.sub(" ", markdown)
    # 1,437 is written 1437 in Vietnamese (where a comma is the decimal point); decimals keep their point, as in code.
    parts["number"] = {re.sub(r"(?<=\d),(?=\d{3})", "", n) for n in NUMBER.findall(markdown)}
    parts["heading levels"] = {tuple(re.findall(r"^(#+) ", markdown, flags=re.M))}
    parts["<details> blocks"] = {markdown.count("<details>")}
    return parts


def lost_in_translation(english_text, vietnamese_text):
    """What the English cell has and its translation does not, as 'kind: span' lines."""
    vi = exact_parts(vietnamese_text)
    return [
        f"{kind}: {span}" for kind, spans in exact_parts(english_text).items() for span in spans - vi[kind]
    ]


def test_code_comments_and_words_in_formulas_may_be_translated_but_not_the_code():
    english = (
        "```python\nx = patchify(imgs)  # (B, L, p*p*C): one row per patch\n# the loss\nloss = f(x)\n```\n"
        "```bash\npython -m mae.pretrain --epochs 2  # two epochs\n```\n"
        "$$\\mathcal{L} = \\frac{1}{|M|} \\sum_{i \\in M} e_i \\text{ with } M \\text{ the removed patches}$$"
    )
    vietnamese = (
        "```python\nx = patchify(imgs)  # (B, L, p*p*C): mỗi mảnh một hàng\n# hàm mất mát\nloss = f(x)\n```\n"
        "```bash\npython -m mae.pretrain --epochs 2  # hai epoch\n```\n"
        "$$\\mathcal{L} = \\frac{1}{|M|} \\sum_{i \\in M} e_i \\text{ với } M \\text{ là các mảnh bị loại}$$"
    )
    assert lost_in_translation(english, vietnamese) == []
    changed = vietnamese.replace("loss = f(x)", "loss = g(x)")
    assert [line.split(":")[0] for line in lost_in_translation(english, changed)] == ["fenced code"]
    assert lost_in_translation(english, vietnamese.replace("--epochs 2", "--epochs 3"))
    assert lost_in_translation(english, vietnamese.replace("e_i", "e_j"))


def test_the_accuracy_check_catches_a_changed_formula_number_or_code():
    english = "Keep `len_keep = int(L * (1 - r))`, ratio 0.75 of 1,437 tokens: $x \\in \\mathbb{R}^{N}$."
    good = "Giữ `len_keep = int(L * (1 - r))`, tỉ lệ 0.75 của 1437 token: $x \\in \\mathbb{R}^{N}$."
    assert lost_in_translation(english, good) == []
    assert lost_in_translation(english, good.replace("0.75", "0,75")) == ["number: 0.75"]
    assert lost_in_translation(english, good.replace("(1 - r)", "(1 + r)")) == [
        "inline code: `len_keep = int(L * (1 - r))`"
    ]
    assert lost_in_translation(english, good.replace("{N}", "{L}")) == ["maths: $x \\in \\mathbb{R}^{N}$"]


@pytest.mark.parametrize("english", ENGLISH, ids=lambda p: p.name[:2])
def test_each_formula_number_code_span_and_url_is_kept(english):
    lost = {
        cell_id: missing
        for cell_id, en_text, vi_text in markdown_pairs(english)
        if (missing := lost_in_translation(en_text, vi_text))
    }
    assert lost == {}


@pytest.fixture
def course_copy(tmp_path):
    """Two English notebooks, their translations and Vietnamese notebooks, copied: what the drift tests change."""
    for english in ENGLISH[1:3]:
        for path in (english, VI / english.name, translation.translation_path(english, ROOT)):
            target = tmp_path / path.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
    assert translation.check(tmp_path) == []
    return tmp_path


def edit_english(root, cell_type, change):
    """Change the first cell of that type after the set-up cells in root's first English notebook; its id."""
    english = translation.english_notebooks(root)[0]
    notebook = json.loads(english.read_text())
    cell = next(c for c in notebook["cells"][3:] if c["cell_type"] == cell_type)
    cell["source"] = change(translation.text(cell)).splitlines(keepends=True)
    english.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
    return english, cell["id"]


def regenerate(root):
    for english in translation.english_notebooks(root):
        sync_notebooks.write(
            translation.translate(english, root)[0], root / "notebooks" / "vi" / english.name
        )


def test_a_changed_english_code_cell_fails_until_regenerated_and_run_in_vietnamese(course_copy):
    english, cell_id = edit_english(course_copy, "code", lambda source: source + "\nprint('new')")
    name = f"notebooks/vi/{english.name}"
    assert translation.check(course_copy) == [
        f"{name}: not executed in vi since its code changed: run python scripts/run_notebooks.py {name}",
        f"{name}: code cell {cell_id} differs from the English one",
    ]
    assert translation.main(["--check"], root=course_copy) == 1  # what `make lint` runs
    regenerate(course_copy)  # the new cell, with the English outputs until the Vietnamese run
    assert translation.check(course_copy) == [
        f"{name}: not executed in vi since its code changed: run python scripts/run_notebooks.py {name}"
    ]
    vi_path = course_copy / name
    notebook = json.loads(vi_path.read_text())
    notebook["metadata"]["mae"] = {
        translation.EXECUTED: translation.code_hash(notebook)
    }  # as run_notebooks.py
    vi_path.write_text(json.dumps(notebook))
    assert translation.check(course_copy) == []


def test_a_changed_english_markdown_cell_fails_until_its_translation_is_updated(course_copy):
    english, cell_id = edit_english(
        course_copy, "markdown", lambda source: source.replace("## ", "## New: ", 1)
    )
    regenerate(course_copy)  # regenerating alone does not help: the translation is stale
    assert translation.check(course_copy) == [
        f"notebooks/vi/{english.name}: cell {cell_id} changed in English since it was translated (see --todo)"
    ]
    todo = translation.todo(course_copy)
    assert (
        f"# cell {cell_id} changed; the English diff since its translation:" in todo
        and "#   +## New: " in todo
    )

    # The translator pastes the entry --todo printed and updates its Vietnamese.
    path = translation.translation_path(english, course_copy)
    entries = translation.load_translation(path)
    pasted = translation.load_translation_text(todo.split(f"# cell {cell_id}")[1].split("\n", 1)[1])
    entries[cell_id] = {**pasted[cell_id], "vi": pasted[cell_id]["vi"].replace("## ", "## Mới: ", 1)}
    path.write_text("".join(translation.entry_yaml(key, e["en"], e["vi"]) for key, e in entries.items()))
    regenerate(course_copy)
    assert translation.check(course_copy) == []


def test_a_missing_translation_or_notebook_or_a_hand_edit_fails(course_copy):
    english = translation.english_notebooks(course_copy)[0]
    path = translation.translation_path(english, course_copy)
    entries = translation.load_translation(path)
    cell_id = list(entries)[1]
    path.write_text(
        "".join(translation.entry_yaml(k, e["en"], e["vi"]) for k, e in entries.items() if k != cell_id)
    )
    assert (
        translation.check(course_copy)[0] == f"notebooks/vi/{english.name}: cell {cell_id} is not translated"
    )
    path.unlink()
    assert translation.check(course_copy) == [
        f"notebooks/vi/{english.name}: no translation file translations/vi/{english.stem}.yaml"
    ]

    second = translation.english_notebooks(course_copy)[1]
    vi_path = course_copy / "notebooks" / "vi" / second.name
    notebook = json.loads(vi_path.read_text())
    code = next(c for c in notebook["cells"] if c["cell_type"] == "code" and c["outputs"])
    code["source"] = ["print('edited by hand')"]
    vi_path.write_text(json.dumps(notebook))
    assert translation.check(course_copy)[1:] == [
        f"notebooks/vi/{second.name}: code cell {code['id']} differs from the English one"
    ]
    markdown = notebook["cells"][0]
    markdown["source"] = ["# Sửa tay"]
    vi_path.write_text(json.dumps(notebook))
    assert translation.check(course_copy)[1] == (
        f"notebooks/vi/{second.name}: markdown cell {markdown['id']} is not its translation "
        "(edit the translation, not the notebook)"
    )
    vi_path.unlink()
    assert translation.check(course_copy)[1:] == [f"notebooks/vi/{second.name}: missing"]


def test_a_parameters_cell_without_its_lang_line_is_a_problem_line_not_a_crash(course_copy):
    english, _ = edit_english(course_copy, "code", lambda source: source)  # (the cell to edit is found below)
    notebook = json.loads(english.read_text())
    parameters = next(c for c in notebook["cells"] if "parameters" in c["metadata"].get("tags", []))
    parameters["source"] = [line for line in parameters["source"] if not line.startswith("lang = ")]
    english.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
    name = f"notebooks/vi/{english.name}"
    assert (
        f"{name}: cell {parameters['id']}: the parameters cell has no `lang = None  # ...` line to set"
        in (translation.check(course_copy))
    )
