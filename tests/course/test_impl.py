"""Whose code runs (mae.impl): one switch (MAE_IMPL), and a learner partway through the course can run
everything.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
from helpers import ROOT

from mae import impl


def test_a_step_is_written_once_no_region_raises_any_more():
    stub = 'def f():\n    # EXERCISE: do it\n    raise NotImplementedError("do it")\n    # END EXERCISE\n'
    assert impl.is_stub(stub)
    assert impl.is_stub(stub.replace("    # END", "    # a comment of mine\n\n    # END"))
    assert not impl.is_stub(
        stub.replace("raise NotImplementedError", "return 1\n    raise NotImplementedError")
    )
    assert not impl.is_stub(stub.replace('raise NotImplementedError("do it")', "return 2"))
    started = stub.replace("    raise", "    x = 1  # begun, not finished\n    raise")
    assert impl.is_stub(started)  # it still raises: the reference stands in until the raise is gone
    nested = stub.replace("    raise", "    if x:\n        raise")
    assert not impl.is_stub(nested)  # a raise of the learner's own, inside their code
    assert not impl.is_stub("def f():\n    return 3\n")  # markers deleted: the learner's own file
    two_regions = stub + stub.replace("def f", "def g").replace(
        'raise NotImplementedError("do it")', "return 4"
    )
    assert impl.is_stub(two_regions)  # one region of two written: not yet


def test_the_fallback_is_told_in_one_line():
    steps = ["attention", "transformer", "encoder", "decoder", "model"]
    assert impl.describe_fallback(steps) == (
        "steps 04-08 are not written yet: using the reference for attention, transformer, encoder, decoder, model"
    )
    assert impl.describe_fallback(["classifier"]) == (
        "step 12 is not written yet: using the reference for classifier"
    )
    assert impl.describe_fallback(["patch_embed", "masking", "attention", "classifier"]).startswith(
        "steps 01, 03-04 and 12 are not written yet"
    )
    assert impl.describe_fallback([]) == ""


def test_the_switch_is_checked():
    assert impl.resolve("solutions") == "solutions"
    assert impl.resolve(None, default="exercises") in impl.IMPLEMENTATIONS
    with pytest.raises(ValueError, match=r"must be one of \('exercises', 'solutions'\), got 'mine'"):
        impl.resolve("mine")


def test_the_stub_message_names_the_file_the_function_and_the_hint():
    message = impl.not_written_message("encoder")
    assert message.startswith(
        "not written yet (exercises/encoder.py, in forward_encoder): patch_embed; add pos_embed"
    )


def run_python(code, **env):
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, **env}, timeout=300,
    )  # fmt: skip


def test_mae_impl_selects_the_exercises():
    """With the stubs untouched, every step runs the reference inside exercises/, and one line says so."""
    result = run_python(
        "import mae\n"
        "model = mae.mae_vit_tiny_patch8()\n"
        "print(mae.impl.selected_name(), type(model).__module__, type(model.blocks[0].attn).__module__)\n",
        MAE_IMPL="exercises",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["exercises", "exercises.model", "exercises.attention"]
    assert "steps 01-08 and 12 are not written yet: using the reference for patch_embed," in result.stderr


def test_mae_impl_rejects_unknown_values():
    result = run_python("import mae; mae.mae_vit_tiny_patch8()", MAE_IMPL="mine")
    assert result.returncode != 0
    assert "MAE_IMPL (or impl) must be one of ('exercises', 'solutions'), got 'mine'" in result.stderr


def environment(course, **env):
    """The environment of a learner working in `course` (a copy, which shadows the installed course)."""
    base = {k: v for k, v in os.environ.items() if k != "MAE_IMPL"}
    return {**base, "PYTHONPATH": str(course), "OMP_NUM_THREADS": "2", **env}


def python(code, course, **env):
    return subprocess.run([sys.executable, "-c", code], cwd=course, env=environment(course, **env),
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def command(args, course, **env):
    return subprocess.run([sys.executable, "-m", *args], cwd=course, env=environment(course, **env),
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def copy_of_the_course(folder, written=()):
    """The course as a learner has it: the exercise stubs, with the steps in `written` done (name -> source)."""
    for name in ("mae", "solutions", "exercises", "notebooks", "checkpoints", "tests/fixtures"):
        shutil.copytree(ROOT / name, folder / name, ignore=shutil.ignore_patterns("__pycache__"))
    for step, source in dict(written).items():
        (folder / "exercises" / f"{step}.py").write_text(source)
    return folder


def done(step):
    """A finished exercise: the reference file's code, as a learner who got it right would have it."""
    return (ROOT / "solutions" / f"{step}.py").read_text()


@pytest.fixture(scope="module")
def partway(tmp_path_factory):
    """Steps 01-03 written, the rest untouched."""
    steps = ("patch_embed", "pos_embed", "masking")
    return copy_of_the_course(tmp_path_factory.mktemp("learner"), {step: done(step) for step in steps})


WHICH_FILES = """
import sys, torch, mae
model = mae.mae_vit_tiny_patch8()
loss, pred, mask = model(torch.randn(2, 3, 64, 64))
files = {m.split('.')[1]: sys.modules[m].__file__ for m in sys.modules if m.startswith('exercises.')}
print(mae.__file__, mae.impl.selected_name(), round(loss.item(), 3) > 0, sorted(k for k, v in files.items() if '/exercises/' in v))
"""


def test_a_learner_with_steps_01_to_03_runs_the_package_on_their_code(partway):
    run = python(WHICH_FILES, partway, MAE_IMPL="exercises")
    assert run.returncode == 0, run.stderr
    assert run.stdout.split()[0] == str(partway / "mae" / "__init__.py")  # the copy, not the installed course
    assert run.stdout.split(maxsplit=1)[1].strip() == "exercises True ['masking', 'patch_embed', 'pos_embed']"
    lines = [line for line in run.stderr.splitlines() if "not written yet" in line]
    assert lines == [
        "MAE_IMPL=exercises: steps 04-08 and 12 are not written yet: using the reference for attention, "
        "transformer, encoder, decoder, model, classifier"
    ]


def test_the_library_runs_the_reference_unless_told(partway):
    run = python(WHICH_FILES, partway)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split()[1:3] == ["solutions", "True"] and "not written yet" not in run.stderr


def test_a_written_but_wrong_step_is_never_replaced(tmp_path):
    wrong = done("masking").replace(
        "ids_shuffle[:, :len_keep]", "ids_shuffle[:, -len_keep:]"
    )  # keeps the largest
    course = copy_of_the_course(tmp_path, {"masking": wrong})
    run = python("import mae, sys; mae.mae_vit_tiny_patch8(); print(sys.modules['exercises.masking'].__file__)",
                 course, MAE_IMPL="exercises")  # fmt: skip
    assert run.stdout.strip() == str(course / "exercises" / "masking.py")
    checks = command(["mae.checks", "masking"], course)
    assert checks.returncode == 1 and "\u2717 03 masking: x_visible" in checks.stdout  # yours was checked


def test_the_terminal_runner_follows_the_switch(partway):
    mine = command(["mae.checks"], partway)
    assert mine.returncode == 1
    assert "3 of 9 steps pass (exercises/)." in mine.stdout
    assert "\u2717 06 encoder: not written yet (exercises/encoder.py, in forward_encoder)" in mine.stdout
    assert "Next: open exercises/attention.py (notebook 04)." in mine.stdout
    reference = command(["mae.checks"], partway, MAE_IMPL="solutions")
    assert reference.returncode == 0 and "9 of 9 steps pass (solutions/)." in reference.stdout


def test_the_training_command_follows_the_switch(partway, tmp_path):
    run = command(["mae.pretrain", "--model", "mae_vit_tiny_patch8", "--input_size", "64", "--batch_size", "4",
                   "--max_steps", "2", "--device", "cpu", "--num_workers", "0", "--output_dir", str(tmp_path / "run")],
                  partway, MAE_IMPL="exercises")  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stderr.count("steps 04-08 and 12 are not written yet") == 1  # told once
    assert (tmp_path / "run" / "checkpoint-last.pth").is_file()


@pytest.mark.integration
@pytest.mark.parametrize("number", ["09", "10", "11"])
def test_notebooks_run_for_a_learner_partway_through(partway, number, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    path = next((partway / "notebooks").glob(f"{number}_*.ipynb"))
    notebook = nbformat.read(path, as_version=4)
    monkeypatch.setenv("PYTHONPATH", str(partway))
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.delenv("MAE_IMPL", raising=False)  # the course's default: the learner's code
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    first = "".join(o.get("text", "") for o in notebook.cells[3].outputs)
    assert "Using your code in exercises/ (impl='exercises')" in first
    assert "steps 04-08 and 12 are not written yet: using the reference for attention" in first
    figures = [
        o
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "image/png" in o.get("data", {})
    ]
    assert figures
    json.dumps(notebook)  # a complete, saveable notebook


LINEAR_PATCH_EMBED = (
    ("self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)",
     "self.proj = nn.Linear(in_chans * patch_size**2, embed_dim)  # on (c, p, q)-flattened patches"),
    ("x = self.proj(imgs)  # (B, D, h, w)\n        return x.flatten(2).transpose(1, 2)  # (B, L, D)",
     "patches = torch.nn.functional.unfold(imgs, self.patch_size, stride=self.patch_size)  # (B, C*p*p, L)\n"
     "        return self.proj(patches.transpose(1, 2))"),
)  # fmt: skip


def test_a_linear_patch_embedding_loads_the_official_layout(tmp_path):
    """A learner's unfold + Linear patch embedding passes its check, and the package loads Conv2d weights into it."""
    source = done("patch_embed")
    for old, new in LINEAR_PATCH_EMBED:
        assert old in source
        source = source.replace(old, new)
    course = copy_of_the_course(tmp_path, {"patch_embed": source})
    code = (
        "import torch, mae\n"
        "from mae import checks\n"
        "from mae.checkpoint import load_pretrained_encoder\n"
        "from mae.course import use\n"
        "code = use('exercises', exercise='patch_embed')\n"
        "checks.check_patch_embed(code.PatchEmbed)\n"
        "mine = mae.model_from_checkpoint('checkpoints/mae_mini_photos.pth').eval()\n"
        "theirs = mae.load_weights(mae.models.MAE(**mine.config), mae.read_checkpoint('checkpoints/mae_mini_photos.pth')['model']).eval()\n"
        "imgs, noise = torch.randn(2, 3, 64, 64), torch.rand(2, 64)\n"
        "print(mine.patch_embed.proj.weight.shape, (mine(imgs, noise=noise)[1] - theirs(imgs, noise=noise)[1]).abs().max().item() < 1e-5)\n"
        "classifier = mae.create_classifier('vit_mini_patch8', num_classes=3, img_size=64)\n"
        "load_pretrained_encoder(classifier, 'checkpoints/mae_mini_photos.pth')\n"
        "print(torch.equal(classifier.patch_embed.proj.weight, mine.patch_embed.proj.weight))\n"
    )
    run = python(code, course, MAE_IMPL="exercises")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert any(line.startswith("\u2713 PatchEmbed") for line in lines)
    assert lines[-2:] == ["torch.Size([128, 192]) True", "True"]


def test_a_file_that_does_not_parse_is_named_step_by_step(tmp_path):
    half = done("transformer").replace(
        "self.norm1 = nn.LayerNorm(dim, eps=layer_norm_eps)", "self.norm1 = nn.LayerNorm(dim"
    )
    course = copy_of_the_course(tmp_path, {"transformer": half})
    run = command(["mae.checks", "masking", "transformer"], course)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "\u2717 05 transformer: exercises/transformer.py does not parse, line" in run.stdout
    assert "\u2717 03 masking: not checked: exercises/transformer.py must parse first" in run.stdout


EXPORTS = """
import torch, timm, mae
from mae.timm_interop import encoder_to_timm
from mae.checkpoint import official_state_dict
from mae.hf_interop import to_transformers
model = mae.mae_vit_tiny_patch8().eval()
assert model.patch_embed.proj.weight.ndim == 2, "the learner's Linear patch embedding"
imgs, noise = torch.randn(2, 3, 64, 64), torch.rand(2, 64)
loss = model(imgs, noise=noise)[0]
hf = to_transformers(model).eval()
print("transformers", abs(hf(pixel_values=imgs, noise=noise).loss.item() - loss.item()) < 1e-5)
vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64, patch_size=8, embed_dim=192, depth=6,
                        num_heads=3, num_classes=0, global_pool="token").eval()
vit.load_state_dict(encoder_to_timm(official_state_dict(model)))
with torch.no_grad():
    tokens = model.forward_encoder(imgs, 0.0)[0]  # mask ratio 0: every patch, in order
    print("timm", torch.allclose(vit.forward_features(imgs), tokens, atol=1e-5))
mae.save_checkpoint("saved.pth", model)
print("checkpoint", mae.read_checkpoint("saved.pth")["model"]["patch_embed.proj.weight"].ndim,
      torch.equal(mae.model_from_checkpoint("saved.pth").patch_embed.proj.weight, model.patch_embed.proj.weight))
"""


@pytest.mark.integration
def test_a_course_finished_with_a_linear_patch_embedding_runs_the_later_notebooks_and_exports(
    tmp_path, monkeypatch
):
    """A patch embedding the check accepts (a Linear on unfolded patches) runs the notebooks that load weights into
    it or export it (01: the official layout loaded into it; 09: pretraining; 10: the shipped and official
    checkpoints; 12: fine-tuning and the timm export), the training command, and the exports to transformers and
    timm, and saves checkpoints in the official layout."""
    import nbformat
    from nbclient import NotebookClient

    source = done("patch_embed")
    for old, new in LINEAR_PATCH_EMBED:
        source = source.replace(old, new)
    steps = [p.stem for p in (ROOT / "exercises").glob("*.py") if p.stem != "__init__"]
    course = copy_of_the_course(tmp_path, {**{step: done(step) for step in steps}, "patch_embed": source})
    checked = command(["mae.checks"], course)
    assert checked.returncode == 0 and "9 of 9 steps pass (exercises/)." in checked.stdout, checked.stdout
    run = python(EXPORTS, course, MAE_IMPL="exercises")
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split("\n")[-4:-1] == ["transformers True", "timm True", "checkpoint 4 True"], (
        run.stdout
    )
    monkeypatch.setenv("PYTHONPATH", str(course))
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setenv("MAE_IMPL", "exercises")
    for number in ("01", "09", "10", "12"):
        path = next((course / "notebooks").glob(f"{number}_*.ipynb"))
        notebook = nbformat.read(path, as_version=4)
        NotebookClient(
            notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
        ).execute()  # raises on the first cell that fails
        assert "Using your code in exercises/" in "".join(
            o.get("text", "") for o in notebook.cells[3].outputs
        )


def test_a_run_folder_is_not_continued_by_other_code(partway, tmp_path):
    """Whose code trains is part of a run: a folder trained by the reference is not resumed with the learner's
    code (which would report the reference's results as theirs), and the refusal says why."""
    flags = ["mae.pretrain", "--model", "mae_vit_tiny_patch8", "--input_size", "64", "--batch_size", "4",
             "--device", "cpu", "--num_workers", "0", "--output_dir", str(tmp_path / "run")]  # fmt: skip
    assert command([*flags, "--max_steps", "1"], partway, MAE_IMPL="solutions").returncode == 0
    assert mae_read(tmp_path / "run" / "checkpoint-last.pth")["model_code"] == "solutions"
    mine = command([*flags, "--max_steps", "2"], partway, MAE_IMPL="exercises")
    assert mine.returncode == 1 and "Traceback" not in mine.stderr
    assert (
        "whose code trains (MAE_IMPL): the reference code in the checkpoint, your code in exercises/ now"
        in mine.stderr
    )


def mae_read(path):
    import mae

    return mae.read_checkpoint(path)
