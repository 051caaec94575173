"""The learner's language (mae.i18n): the checks, hints, notices and figures speak Vietnamese in notebooks/vi/, with
`lang`, or with $MAE_LANG; the catalogue (scripts/translate_messages.py) has every message in Vietnamese, with the
message's {fields}, and CI fails on one that lacks it."""

import io
import os
import subprocess
import sys

import pytest
import torch
from helpers import ROOT

import mae
from mae import checks, i18n
from mae.checks import CheckFailed

sys.path.insert(0, str(ROOT / "scripts"))
import translate_messages  # noqa: E402


@pytest.fixture
def vietnamese():
    i18n.set_language("vi")
    yield
    i18n.set_language(None)


def vi(message):
    """The catalogue's Vietnamese for an English message (failing the test if it has none)."""
    before = i18n._chosen
    i18n.set_language("vi")
    try:
        translated = i18n._(message)
    finally:
        i18n.set_language(before)
    assert translated != message, f"no Vietnamese for {message!r}"
    return translated


class FlattenedNoTranspose(torch.nn.Module):
    """A learner's realistic mistake in step 01: (B, D, L) out, the transpose forgotten."""

    def __init__(self, img_size=224, patch_size=16, in_chans=3, embed_dim=768):
        super().__init__()
        self.img_size, self.patch_size, self.in_chans = img_size, patch_size, in_chans
        grid = (
            (img_size // patch_size,) * 2
            if isinstance(img_size, int)
            else tuple(s // patch_size for s in img_size)
        )
        self.grid_size, self.num_patches = grid, grid[0] * grid[1]
        self.proj = torch.nn.Conv2d(in_chans, embed_dim, patch_size, patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2)


def test_a_failed_check_speaks_vietnamese_and_names_the_mistake(vietnamese):
    with pytest.raises(CheckFailed) as failed:
        checks.check_patch_embed(FlattenedNoTranspose)
    message = str(failed.value)
    hint = vi("the embedding dimension must come last: (B, L, D); did you forget .transpose(1, 2)?")
    assert hint in message and "(2, 8, 16)" in message
    assert "expected shape" not in message and "Hint:" not in message  # no English left around it
    assert vi("Hint: {hint}").format(hint=hint) in message


def test_in_english_by_default_the_message_is_unchanged():
    i18n.set_language(None)
    with pytest.raises(CheckFailed) as failed:
        checks.check_patch_embed(FlattenedNoTranspose)
    assert str(failed.value).startswith(
        "PatchEmbed output: expected shape (2, 16, 8) (image, patch, channel)"
    )


def test_a_passing_check_and_the_notices_speak_vietnamese(vietnamese, capsys):
    checks.check_patch_embed(mae.models.PatchEmbed)
    printed = capsys.readouterr().out
    assert printed.startswith("\u2713 ") and "PatchEmbed" in printed and "as the reference" not in printed
    line = mae.impl.describe_fallback(["attention", "transformer"])
    assert line == vi("steps {numbers} are not written yet: using the reference for {steps}").format(
        numbers="04-05", steps="attention, transformer"
    )


def test_the_folder_is_read_and_lang_wins_over_mae_lang(monkeypatch, tmp_path):
    from mae import course

    monkeypatch.delenv("MAE_LANG", raising=False)
    monkeypatch.chdir(ROOT / "notebooks" / "vi")
    assert course.folder_language() == "vi"
    monkeypatch.chdir(ROOT / "notebooks")
    assert course.folder_language() is None
    monkeypatch.setenv("MAE_LANG", "vi")
    i18n.set_language(None)
    assert i18n.language() == "vi"
    i18n.set_language("en")
    assert i18n.language() == "en"  # lang (papermill -p lang en) wins over $MAE_LANG
    i18n.set_language(None)
    monkeypatch.setenv("MAE_LANG", "fr")
    assert i18n.language() == "en"  # a language the course does not have: English
    with pytest.raises(ValueError, match="lang must be one of en, vi"):
        i18n.set_language("fr")


def test_python_m_mae_checks_speaks_mae_lang():
    env = {**os.environ, "MAE_LANG": "vi", "MAE_IMPL": "exercises", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "mae.checks", "patch_embed"], cwd=ROOT, env=env,
                         capture_output=True, text=True).stdout  # fmt: skip
    english = subprocess.run([sys.executable, "-m", "mae.checks", "patch_embed"], cwd=ROOT,
                             env={**env, "MAE_LANG": "en"}, capture_output=True, text=True).stdout  # fmt: skip
    assert "not written yet" in english and "not written yet" not in out
    assert "chưa được viết (exercises/patch_embed.py, trong __init__): một Conv2d tên là `proj`" in out
    assert "0 trên 1 bước đạt (exercises/)." in out and "Tiếp theo: mở exercises/patch_embed.py" in out


def test_figures_are_labelled_in_the_language(vietnamese):
    import matplotlib

    matplotlib.use("Agg")
    from mae import visualize

    fig = visualize.show_masking(mae.mae_vit_tiny_patch8(img_size=32), torch.zeros(1, 3, 32, 32), [0.5])
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == vi("original") and "kept" not in titles[1]


def test_the_accuracy_figure_shows_its_rows_and_columns_in_the_language_and_keeps_unknown_names(vietnamese):
    import matplotlib

    matplotlib.use("Agg")
    from mae import shifted_digits as study
    from mae import visualize

    table = study.accuracy_table([{name: (0.5, 0.6) for name in study.FEATURES}], {study.STARTS[0]: [0.9]})
    table["a learner's own row"] = {"k-NN": 0.4}
    fig = visualize.show_accuracies(table, chance=0.1)
    rows = [label.get_text() for label in fig.axes[0].get_yticklabels()]
    assert rows == [vi("MAE-pretrained"), vi("random init"), vi("raw pixels"), "a learner's own row"]
    legend = [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
    assert vi("linear probe, 1,437 labels") in legend and "k-NN" in legend


def test_a_notebooks_tr_messages_are_extracted_in_order_f_strings_included_and_a_tr_of_a_variable_is_refused(
    tmp_path,
):
    import json

    cells = [
        {"cell_type": "code", "source": ["%load_ext autoreload\n", 'ax.set_xlabel(tr("step"))\n']},
        {"cell_type": "markdown", "source": ['tr("not code")']},
        {
            "cell_type": "code",
            "source": ["!ls\n", 'title = f"{tr(\'inside\')}"; legend = tr("loss")  # _("no")\n'],
        },
    ]
    path = tmp_path / "99_x.ipynb"
    path.write_text(json.dumps({"cells": cells}))
    assert translate_messages.notebook_messages(path) == ["step", "inside", "loss"]
    cells.append({"cell_type": "code", "id": "c4", "source": ["ax.set_title(tr(name))"]})
    path.write_text(json.dumps({"cells": cells}))
    with pytest.raises(
        ValueError, match=r"99_x.ipynb, cell c4: tr\(name\) is not tr\(\) of one literal string"
    ):
        translate_messages.notebook_messages(path)
    notebooks = translate_messages.extract()
    assert "notebooks/11_linear_probe_and_knn.ipynb" in [
        where for where, _ in notebooks["CLS token"].locations
    ]


def test_every_message_has_its_vietnamese_with_the_same_fields():
    assert translate_messages.main(["--check"]) == 0


def test_a_message_without_vietnamese_or_with_other_fields_fails_the_check(monkeypatch, capsys):
    real = translate_messages.extract

    def with_a_new_message():
        catalog = real()
        catalog.add("a message nobody translated {name}", locations=[("mae/x.py", None)])
        return catalog

    monkeypatch.setattr(translate_messages, "extract", with_a_new_message)
    assert translate_messages.main(["--check"]) == 1
    out = capsys.readouterr()
    assert "vi: no translation: 'a message nobody translated {name}'" in out.out
    assert "python scripts/translate_messages.py" in out.err
    from babel.messages.catalog import Catalog

    catalog = Catalog(locale="vi")
    catalog.add("{what} raised {kind}", "{what} gây lỗi {loai}")  # a misspelt field: KeyError in .format
    catalog.add("{what}: {error}", "{what}: {error} }")  # a stray brace: ValueError in .format
    catalog.add("{got:.5f}", "{got}")  # the format spec lost
    catalog.add("PatchEmbed.{name} is {value!r}", "PatchEmbed.{name} là {value}")  # the conversion lost
    catalog.add("one line", "một\nhai")  # an exercise hint is one comment line
    catalog.add("half done", "làm dở", flags=("fuzzy",))  # a fuzzy translation is no translation
    catalog.add("fine {a:.2f}", "ổn {a:.2f}")
    missing, wrong = translate_messages.problems(catalog)
    assert missing == ["half done"]
    assert wrong == [
        "{what} raised {kind}",
        "{what}: {error}",
        "{got:.5f}",
        "PatchEmbed.{name} is {value!r}",
        "one line",
    ]


def test_the_compiled_catalogue_is_the_po_files_translations():
    import gettext

    from babel.messages.pofile import read_po

    with translate_messages.po_path("vi").open("rb") as file:
        po = {m.id: m.string for m in read_po(file, locale="vi") if m.id}
    mo = gettext.GNUTranslations(io.BytesIO(translate_messages.mo_path("vi").read_bytes()))
    assert {k: v for k, v in mo._catalog.items() if k} == po and po["original"] == "ảnh gốc"
    with translate_messages.po_path("vi").open(
        "rb"
    ) as file:  # the header an editor reads: language, encoding
        headers = dict(read_po(file).mime_headers)
    assert headers["Language"] == "vi" and headers["Content-Type"].lower() == "text/plain; charset=utf-8"


def test_the_stub_a_learner_edits_has_each_hint_in_both_languages_and_the_check_quotes_it_in_theirs(
    vietnamese,
):
    from mae.impl import not_written_message

    stub = (ROOT / "exercises" / "patch_embed.py").read_text()
    english = "a Conv2d named `proj` from in_chans to embed_dim whose kernel and stride are both patch_size"
    assert (
        f"# EXERCISE: {english}\n        # BÀI TẬP: {vi(english)}\n        raise NotImplementedError" in stub
    )
    assert not_written_message("patch_embed").endswith(vi(english))
    assert i18n._("") == ""  # never the catalogue's header


def test_running_the_use_cell_again_keeps_the_notebooks_language(monkeypatch, capsys):
    """use() moves a notebook started in notebooks/vi/ to notebooks/: a second run of that cell (Run All again,
    as a learner does after fixing their code) must still speak Vietnamese. Seen in JupyterLab: it did not."""
    from mae import course

    monkeypatch.delenv("MAE_LANG", raising=False)
    monkeypatch.setattr(course, "_started_in", None)
    monkeypatch.setenv("MAE_IMPL", "solutions")  # use() exports its choice: put it back afterwards
    monkeypatch.chdir(ROOT / "notebooks" / "vi")
    try:
        course.use("solutions")
        assert __import__("os").getcwd() == str(ROOT / "notebooks") and i18n.language() == "vi"
        course.use("solutions")  # the same cell again, now from notebooks/
        assert i18n.language() == "vi"
        assert capsys.readouterr().out.count("Đang dùng mã tham chiếu") == 2
        course.use("solutions", lang="en")  # lang says otherwise
        assert i18n.language() == "en"
    finally:
        i18n.set_language(None)
