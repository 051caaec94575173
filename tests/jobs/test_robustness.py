"""python -m mae.robustness on small folders in each benchmark's real layout, every figure against a direct
computation with the same model, and its bad input."""

import json
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

import mae
from mae import benchmarks, robustness
from mae.benchmarks import ALEXNET_ERROR, CORRUPTIONS
from mae.data.images import channel_stats
from mae.data.labelled import eval_transform

SYNSETS = benchmarks.imagenet_synsets()
A_INDICES, A_SYNSETS = benchmarks.subset("a")
OUTSIDE = max(i for i in range(1000) if i not in A_INDICES)  # not a label position among 200 either


def image(path, size=32, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    Image.fromarray((torch.rand(size, size, 3, generator=g) * 255).to(torch.uint8).numpy()).save(path)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """An official-format fine-tuned file ({"model": ...}, a 1000-way head, no class names) of a tiny ViT."""
    torch.manual_seed(0)
    model = mae.create_classifier("vit_mini_patch8", num_classes=1000, img_size=32)
    # The bias decides: class OUTSIDE (not in ImageNet-A) wins the 1000-way arg-max; ImageNet-A's 151st class wins
    # among its 200. So a set in the 1000 classes is half right, and ImageNet-A unrestricted would be all wrong.
    torch.nn.init.normal_(model.head.weight, std=0.01)
    with torch.no_grad():
        model.head.bias.zero_()
        model.head.bias[OUTSIDE], model.head.bias[A_INDICES[150]] = 10.0, 8.0
    path = tmp_path_factory.mktemp("ckpt") / "finetuned.pth"
    torch.save({"model": model.state_dict()}, path)
    return path, model.eval()


def predict(model, paths, outputs=None, crop_pct=1.0):
    """The arg-max class (an index into `outputs`, or of the 1000) of each image, through the evaluation transform
    (ImageNet-C's crops as they are: crop_pct 1; the other sets resized to 1/0.875 and centre-cropped)."""
    mean, std = channel_stats(3)
    transform = eval_transform(SimpleNamespace(crop_pct=crop_pct, mean=mean, std=std), 32)
    imgs = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths])
    with torch.no_grad():
        logits = model(imgs)
    return (logits if outputs is None else logits[:, outputs]).argmax(1).tolist()


def run(tmp_path, checkpoint, *flags):
    return robustness.main(["--model", "vit_mini_patch8", "--resume", str(checkpoint), "--input_size", "32",
                            "--device", "cpu", "--num_workers", "0", "--batch_size", "16",
                            "--output_dir", str(tmp_path / "out"), *flags])  # fmt: skip


def test_imagenet_c_a_and_sketch_figures_equal_a_direct_computation(tmp_path, classifier, capsys):
    path, model = classifier
    classes = (SYNSETS[OUTSIDE], SYNSETS[500])  # the first always predicted
    c_root = tmp_path / "imagenet-c"
    for i, name in enumerate(CORRUPTIONS):
        for severity in range(
            1, 6
        ):  # 1 to 3 images of the predicted class, 1 of the other: errors differ by folder
            for k in range(1 + (i + severity) % 3):
                image(
                    c_root / name / str(severity) / classes[0] / f"{k}.JPEG",
                    size=224,
                    seed=100 * i + 10 * severity + k,
                )
            image(
                c_root / name / str(severity) / classes[1] / "x.JPEG", size=224, seed=5000 + 10 * i + severity
            )
    a_root = tmp_path / "imagenet-a"
    for j, wnid in enumerate((A_SYNSETS[5], A_SYNSETS[150])):
        for k in range(3):
            image(a_root / wnid / f"{k}.jpg", seed=7000 + 10 * j + k)
    results = run(tmp_path, path, "--imagenet_c", str(c_root), "--imagenet_a", str(a_root))
    column = results[f"vit_mini_patch8 ({path.name})"]

    # ImageNet-C: each folder's error from the model's own predictions, then the mCE by hand.
    errors = {}
    for name in CORRUPTIONS:
        for severity in range(1, 6):
            paths = sorted((c_root / name / str(severity)).glob("*/*.JPEG"))
            truth = [SYNSETS.index(p.parent.name) for p in paths]
            error = 1 - sum(p == t for p, t in zip(predict(model, paths), truth, strict=True)) / len(paths)
            errors[name] = errors.get(name, 0) + error / 5
            assert column["imagenet_c"]["errors"][f"{name}/{severity}"] == pytest.approx(100 * error)
    assert column["imagenet_c"]["mce"] == pytest.approx(
        100 * sum(errors[c] / ALEXNET_ERROR[c] for c in CORRUPTIONS) / 15
    )
    assert column["imagenet_c"]["mean_error"] == pytest.approx(100 * sum(errors.values()) / 15)
    assert len(set(column["imagenet_c"]["errors"].values())) == 3  # 1/2, 1/3 and 1/4 wrong

    # ImageNet-A: the arg-max among its 200 classes only.
    paths = sorted(a_root.glob("*/*.jpg"))
    labels = [A_SYNSETS.index(p.parent.name) for p in paths]
    predicted = predict(model, paths, A_INDICES, crop_pct=224 / 256)
    assert column["imagenet_a"]["acc1"] == pytest.approx(
        100 * sum(p == t for p, t in zip(predicted, labels)) / 6
    )
    assert column["imagenet_a"]["images"] == 6 and column["imagenet_a"]["acc1"] == pytest.approx(50.0)

    out = capsys.readouterr().out
    assert "* ImageNet-C mCE" in out and "(normalised by AlexNet)" in out and "* Acc@1" in out
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| ImageNet-Corruption mCE, AlexNet-normalised (lower is better) |" in table
    assert "ImageNet-Adversarial top-1" in table and "Sketch" not in table
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved[f"vit_mini_patch8 ({path.name})"]["imagenet_a"]["acc1"] == column["imagenet_a"]["acc1"]
    logged = [json.loads(line) for line in (tmp_path / "out" / "log.txt").read_text().splitlines()]
    assert [line["set"] for line in logged] == ["imagenet_c", "imagenet_a"]


def test_a_missing_severity_is_said_and_the_other_errors_are_still_printed(tmp_path, classifier, capsys):
    path, _ = classifier
    root = tmp_path / "c"
    for name in CORRUPTIONS[:2]:
        for severity in range(1, 6):
            image(root / name / str(severity) / SYNSETS[0] / "x.JPEG", size=224)
    column = run(tmp_path, path, "--imagenet_c", str(root))[f"vit_mini_patch8 ({path.name})"]["imagenet_c"]
    assert (
        column["mce"] is None
        and len(column["errors"]) == 10
        and "lacks corruptions impulse_noise" in column["missing"]
    )
    out = capsys.readouterr().out
    assert "warning:" in out and "the mCE needs all 15 benchmark corruptions" in out
    assert "* ImageNet-C mCE needs all 15 corruptions" in out


def test_bad_input_is_one_clear_error_and_nothing_is_written(tmp_path, classifier):
    path, _ = classifier
    sketch = tmp_path / "sketch"
    image(sketch / SYNSETS[1] / "a.JPEG")
    image(sketch / "not_a_class" / "a.JPEG")
    with pytest.raises(benchmarks.LayoutError, match=r"the class folder\(s\) not_a_class match no class"):
        run(tmp_path, path, "--imagenet_sketch", str(sketch))
    (sketch / SYNSETS[2]).mkdir()
    with pytest.raises(FileNotFoundError, match="no images in the class folder"):
        run(tmp_path, path, "--imagenet_sketch", str(sketch / ".." / "sketch"))
    c_root = tmp_path / "c"
    image(c_root / "fog" / "1" / SYNSETS[0] / "x.JPEG", size=40)
    with pytest.raises(
        benchmarks.LayoutError, match=r"x.JPEG is 40x40: ImageNet-C's images are 224x224 crops"
    ):
        run(tmp_path, path, "--imagenet_c", str(c_root))
    with pytest.raises(ValueError, match="give at least one benchmark"):
        run(tmp_path, path)
    nested = tmp_path / "nested"
    image(
        nested / "noise" / "gaussian_noise" / "1" / SYNSETS[0] / "x.JPEG", size=224
    )  # the tar's categories kept
    with pytest.raises(
        benchmarks.LayoutError,
        match=r"holds none of ImageNet-C's corruption folders .* \(it has noise/ folders",
    ):
        run(tmp_path, path, "--imagenet_c", str(nested))
    with pytest.raises(
        ValueError, match=r"two checkpoints would share the column vit_mini_patch8 \(finetuned.pth\)"
    ):
        robustness.main(["--model", "vit_mini_patch8", "--resume", str(path), str(path), "--imagenet_sketch",
                         str(sketch), "--output_dir", str(tmp_path / "out")])  # fmt: skip
    with pytest.raises(FileNotFoundError, match="--imagenet_a .*: no such folder"):
        run(tmp_path, path, "--imagenet_a", str(tmp_path / "nowhere"))
    small = mae.create_classifier("vit_mini_patch8", num_classes=10, img_size=32)
    torch.save({"model": small.state_dict()}, tmp_path / "ten.pth")
    with pytest.raises(ValueError, match="10-way head and records no class names"):
        run(tmp_path, tmp_path / "ten.pth", "--imagenet_sketch", str(sketch))
    torch.save(
        {"model": small.state_dict(), "class_names": [str(d) for d in range(9)]}, tmp_path / "nine.pth"
    )
    with pytest.raises(ValueError, match="names 9 classes but its head has 10 outputs"):
        run(tmp_path, tmp_path / "nine.pth", "--imagenet_sketch", str(sketch))
    assert not (tmp_path / "out" / "results.md").exists()


@pytest.mark.integration
def test_two_processes_count_every_image_once_and_agree_with_one(tmp_path, classifier):
    """torchrun with 2 gloo processes on 7 sketches (an odd count: no padding duplicates) gives one process's figures."""
    import sys
    from pathlib import Path

    from helpers import run_command

    path, _ = classifier
    sketch = tmp_path / "sketch"
    for k in range(7):
        image(sketch / SYNSETS[[OUTSIDE, 10, 20][k % 3]] / f"{k}.JPEG", seed=k)
    one = run(tmp_path, path, "--imagenet_sketch", str(sketch))[f"vit_mini_patch8 ({path.name})"][
        "imagenet_sketch"
    ]
    torchrun = str(Path(sys.executable).parent / "torchrun")
    done = run_command([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "mae.robustness", "--model", "vit_mini_patch8", "--resume", str(path),
                        "--input_size", "32", "--device", "cpu", "--num_workers", "0", "--batch_size", "2",
                        "--imagenet_sketch", str(sketch), "--output_dir", str(tmp_path / "two")])  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    two = json.loads((tmp_path / "two" / "results.json").read_text())[f"vit_mini_patch8 ({path.name})"]
    assert two["imagenet_sketch"]["images"] == 7 and one["acc1"] == pytest.approx(
        100 * 3 / 7
    )  # the OUTSIDE ones
    assert two["imagenet_sketch"] == pytest.approx(one)
    assert done.stdout.count("* Acc@1") == 1  # printed by rank 0 only
