"""What linear probing and fine-tuning share (mae.classify): the official presets under the flags given, the
number of classes, evaluation (counted on the host, pinned batches, the official output), the official
fine-tuned files.
"""

from types import SimpleNamespace

import pytest
import torch
from helpers import CLASSIFIER, SMALL_CLASSIFIER

import mae
from mae import classify, finetune, linprobe
from mae.checkpoint import CheckpointError
from mae.engine import distributed
from mae.engine.flags import parse_job_args


def test_presets_are_the_official_recipes_and_flags_still_win():
    args = parse_job_args(["--preset", "vit_large"], finetune.get_args_parser(), finetune.PRESETS)
    assert (args.model, args.epochs, args.blr, args.layer_decay, args.drop_path) == (
        "vit_large_patch16",
        50,
        1e-3,
        0.75,
        0.2,
    )
    assert (args.mixup, args.cutmix, args.smoothing, args.reprob, args.effective_batch) == (
        0.8,
        1.0,
        0.1,
        0.25,
        1024,
    )
    args = parse_job_args(
        ["--preset", "vit_base", "--epochs", "3"], finetune.get_args_parser(), finetune.PRESETS
    )
    assert (args.epochs, args.blr, args.layer_decay) == (3, 5e-4, 0.65)
    args = parse_job_args(["--preset", "imagenet"], linprobe.get_args_parser(), linprobe.PRESETS)
    assert (args.blr, args.weight_decay, args.effective_batch, args.epochs, args.global_pool) == (
        0.1,
        0.0,
        16384,
        90,
        False,
    )


def test_fewer_classes_than_the_data_are_refused_before_training(tmp_path):
    with pytest.raises(
        ValueError, match=r"--nb_classes 5 is smaller than the 10 classes .*--nb_classes 10 or more"
    ):
        finetune.main([*CLASSIFIER, "--nb_classes", "5", "--output_dir", str(tmp_path)])
    assert not (tmp_path / "log.jsonl").exists()


def test_evaluation_counts_on_the_host_and_pins_its_batches(monkeypatch):
    """No tensor is made on the device per batch (each one waited for the GPU), and batches come from pinned memory
    on GPUs, as in training; the statistics are those of the whole dataset."""
    torch.manual_seed(0)
    images, labels = torch.randn(37, 1, 32, 32), torch.randint(0, 10, (37,))
    model = mae.create_classifier("vit_mini_patch8", num_classes=10, img_size=32, in_chans=1)
    args = SimpleNamespace(batch_size=8, num_workers=0, pin_mem=True)
    made_on_device = []
    real_tensor = torch.tensor
    monkeypatch.setattr(torch, "tensor", lambda *a, **k: made_on_device.append(k) or real_tensor(*a, **k))
    data = torch.utils.data.TensorDataset(images, labels)
    stats = classify.evaluate(model, data, args, distributed.Context())
    assert [k for k in made_on_device if "device" in k] == []
    with torch.no_grad():
        logits = model.eval()(images)
    top5 = logits.topk(5, dim=1).indices == labels[:, None]
    assert stats["acc1"] == pytest.approx(100 * top5[:, 0].double().mean().item())
    assert stats["acc5"] == pytest.approx(100 * top5.any(1).double().mean().item())
    assert stats["loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item(), rel=1e-5)

    class Built(Exception):
        pass

    def record(*args, **kwargs):
        raise Built(kwargs["pin_memory"])

    monkeypatch.setattr(torch.utils.data, "DataLoader", record)
    for device, pinned in (("cuda", True), ("cpu", False)):
        with pytest.raises(Built) as built:
            classify.evaluate(model, [], args, distributed.Context(device=torch.device(device)))
        assert built.value.args == (pinned,)


def test_evaluation_without_num_workers_takes_the_default_workers_as_training_does(monkeypatch):
    """--num_workers left out (the official fine-tuning commands do) is None: the DataLoader was handed None and
    raised a TypeError at the first evaluation."""
    from mae.engine.data import default_workers

    seen = []
    monkeypatch.setattr(torch.utils.data, "DataLoader", lambda *a, **k: seen.append(k["num_workers"]) or [])
    args = SimpleNamespace(batch_size=8, num_workers=None, pin_mem=False)
    model = mae.create_classifier("vit_mini_patch8", num_classes=10, img_size=32, in_chans=1)
    classify.evaluate(model, [], args, distributed.Context())
    assert seen == [default_workers(distributed.Context())]


@pytest.mark.integration
def test_eval_reads_the_official_fine_tuned_format(tmp_path, capsys):
    """Official fine-tuned files are {"model": timm-style ViT weights with fc_norm and head}."""
    torch.manual_seed(0)
    model = mae.create_classifier("vit_mini_patch8", num_classes=10, img_size=32, in_chans=1)
    torch.save({"model": model.state_dict()}, tmp_path / "official.pth")
    stats = finetune.main(
        [
            *SMALL_CLASSIFIER,
            "--eval",
            "--resume",
            str(tmp_path / "official.pth"),
            "--output_dir",
            str(tmp_path),
        ]
    )
    assert (
        f"* Acc@1 {stats['acc1']:.3f} Acc@5 {stats['acc5']:.3f} loss {stats['loss']:.3f}"
        in capsys.readouterr().out
    )
    with pytest.raises(
        CheckpointError, match="does not fit this classifier"
    ):  # a probe checkpoint is another model
        linprobe.main(
            [
                *SMALL_CLASSIFIER,
                "--eval",
                "--resume",
                str(tmp_path / "official.pth"),
                "--output_dir",
                str(tmp_path),
            ]
        )
    with pytest.raises(ValueError, match="--eval needs --resume"):
        finetune.main([*SMALL_CLASSIFIER, "--eval", "--output_dir", str(tmp_path)])


@pytest.mark.parametrize("job", [finetune, linprobe])
def test_a_classifier_checkpoint_records_its_class_names_in_output_order(job, tmp_path):
    """The names of the sorted class folders (ImageFolder's order, the official checkpoints' too), so that a
    dataset of some of those classes can be mapped by name later (the robustness sets)."""
    from PIL import Image

    from mae.checkpoint import read_checkpoint

    for split in ("train", "val"):
        for name in ("tench", "goldfish", "n01443537"):
            folder = tmp_path / "data" / split / name
            folder.mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (40, 40), (40 * i, 90, 200)).save(folder / f"{i}.png")
    out = tmp_path / "run"
    job.main(["--model", "vit_tiny_patch8", "--input_size", "32", "--data_path", str(tmp_path / "data"), "--device",
              "cpu", "--num_workers", "0", "--batch_size", "2", "--max_steps", "1", "--output_dir", str(out)])  # fmt: skip
    assert read_checkpoint(out / "checkpoint-last.pth")["class_names"] == ["goldfish", "n01443537", "tench"]
    job.main([*SMALL_CLASSIFIER, "--max_steps", "1", "--output_dir", str(tmp_path / "digits")])
    assert read_checkpoint(tmp_path / "digits" / "checkpoint-last.pth")["class_names"] == list("0123456789")
