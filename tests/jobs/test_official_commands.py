"""The official repository's commands (PRETRAIN.md, FINETUNE.md) run here as written, and the logs read as
theirs.

Each command is kept verbatim, with the official script names mapped to this project's modules and ${...} set
to local paths. It must parse unchanged; then its first optimizer step runs on the CPU with a tiny model and a
tiny ImageNet-style folder (flags appended after the command's own win).
"""

import json
import re
import shlex

import pytest
import torch
from PIL import Image

import mae
from mae import finetune, linprobe, pretrain, submit

SCRIPTS = {  # the official entry points -> (this project's job, the parse function)
    "submitit_pretrain.py": "pretrain",
    "submitit_finetune.py": "finetune",
    "submitit_linprobe.py": "linprobe",
    "main_pretrain.py": "pretrain",
    "main_finetune.py": "finetune",
    "main_linprobe.py": "linprobe",
}
OFFICIAL_COMMANDS = [  # PRETRAIN.md and FINETUNE.md of facebookresearch/mae, as written there
    """python submitit_pretrain.py \\
    --job_dir ${JOB_DIR} \\
    --nodes 8 \\
    --use_volta32 \\
    --batch_size 64 \\
    --model mae_vit_large_patch16 \\
    --norm_pix_loss \\
    --mask_ratio 0.75 \\
    --epochs 800 \\
    --warmup_epochs 40 \\
    --blr 1.5e-4 --weight_decay 0.05 \\
    --data_path ${IMAGENET_DIR}""",
    "python main_finetune.py --eval --resume mae_finetuned_vit_base.pth --model vit_base_patch16 --batch_size 16 --data_path ${IMAGENET_DIR}",
    "python main_finetune.py --eval --resume mae_finetuned_vit_large.pth --model vit_large_patch16 --batch_size 16 --data_path ${IMAGENET_DIR}",
    "python main_finetune.py --eval --resume mae_finetuned_vit_huge.pth --model vit_huge_patch14 --batch_size 16 --data_path ${IMAGENET_DIR}",
    """python submitit_finetune.py \\
    --job_dir ${JOB_DIR} \\
    --nodes 4 \\
    --batch_size 32 \\
    --model vit_base_patch16 \\
    --finetune ${PRETRAIN_CHKPT} \\
    --epochs 100 \\
    --blr 5e-4 --layer_decay 0.65 \\
    --weight_decay 0.05 --drop_path 0.1 --reprob 0.25 --mixup 0.8 --cutmix 1.0 \\
    --dist_eval --data_path ${IMAGENET_DIR}""",
    """OMP_NUM_THREADS=1 python -m torch.distributed.launch --nproc_per_node=8 main_finetune.py \\
    --accum_iter 4 \\
    --batch_size 32 \\
    --model vit_base_patch16 \\
    --finetune ${PRETRAIN_CHKPT} \\
    --epochs 100 \\
    --blr 5e-4 --layer_decay 0.65 \\
    --weight_decay 0.05 --drop_path 0.1 --mixup 0.8 --cutmix 1.0 --reprob 0.25 \\
    --dist_eval --data_path ${IMAGENET_DIR}""",
    """python submitit_finetune.py \\
    --job_dir ${JOB_DIR} \\
    --nodes 8 --use_volta32 \\
    --batch_size 32 \\
    --model vit_large_patch16 \\
    --finetune ${PRETRAIN_CHKPT} \\
    --epochs 50 \\
    --blr 1e-3 --layer_decay 0.75 \\
    --weight_decay 0.05 --drop_path 0.2 --reprob 0.25 --mixup 0.8 --cutmix 1.0 \\
    --dist_eval --data_path ${IMAGENET_DIR}""",
    """python submitit_finetune.py \\
    --job_dir ${JOB_DIR} \\
    --nodes 16 --use_volta32 \\
    --batch_size 16 \\
    --model vit_huge_patch14 \\
    --finetune ${PRETRAIN_CHKPT} \\
    --epochs 50 \\
    --blr 1e-3 --layer_decay 0.75 \\
    --weight_decay 0.05 --drop_path 0.3 --reprob 0.25 --mixup 0.8 --cutmix 1.0 \\
    --dist_eval --data_path ${IMAGENET_DIR}""",
    """python submitit_linprobe.py \\
    --job_dir ${JOB_DIR} \\
    --nodes 4 \\
    --batch_size 512 \\
    --model vit_base_patch16 --cls_token \\
    --finetune ${PRETRAIN_CHKPT} \\
    --epochs 90 \\
    --blr 0.1 \\
    --weight_decay 0.0 \\
    --dist_eval --data_path ${IMAGENET_DIR}""",
]
# More of the official flags, which the commands above leave at their defaults.
OTHER_OFFICIAL_FLAGS = {
    "pretrain": "--pin_mem --no_pin_mem --world_size 1 --local_rank 0 --dist_on_itp --dist_url env:// --start_epoch 0",
    "finetune": "--pin_mem --no_pin_mem --world_size 1 --local_rank 0 --dist_on_itp --dist_url env:// --dist_eval "
    "--color_jitter 0.4 --cutmix_minmax 0.2 0.8 --resplit --aa rand-m9-mstd0.5-inc1 --smoothing 0.1 "
    "--remode pixel --recount 1 --mixup_prob 1.0 --mixup_switch_prob 0.5 --mixup_mode batch --global_pool "
    "--nb_classes 2 --clip_grad 5.0",
    "linprobe": "--pin_mem --no_pin_mem --world_size 1 --local_rank 0 --dist_on_itp --dist_url env:// --dist_eval "
    "--nb_classes 2",
}
PARSERS = {
    "pretrain": pretrain.get_args_parser,
    "finetune": finetune.get_args_parser,
    "linprobe": linprobe.get_args_parser,
}
RUNNERS = {"pretrain": pretrain.main, "finetune": finetune.main, "linprobe": linprobe.main}
TINY = {"pretrain": "mae_vit_tiny_patch8", "finetune": "vit_tiny_patch8", "linprobe": "vit_tiny_patch8"}


def imagenet_like(root, classes=2, per_class=6):
    """A folder with train/ and val/ of class sub-folders, as ImageNet is laid out."""
    generator = torch.Generator().manual_seed(0)
    for split in ("train", "val"):
        for c in range(classes):
            folder = root / split / f"n0{c}"
            folder.mkdir(parents=True)
            for i in range(per_class if split == "train" else 2):
                pixels = (torch.rand(40, 40, 3, generator=generator) * 255).byte().numpy()
                Image.fromarray(pixels).save(folder / f"{i}.JPEG", format="JPEG")
    return root


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    """${IMAGENET_DIR}, ${PRETRAIN_CHKPT}, ${JOB_DIR} and the official fine-tuned files, tiny and local."""
    root = tmp_path_factory.mktemp("official")
    data = imagenet_like(root / "imagenet")
    torch.manual_seed(0)
    pretrained = root / "mae_pretrain_vit_tiny.pth"
    encoder = {
        k: v
        for k, v in mae.mae_vit_tiny_patch8(img_size=32).state_dict().items()
        if not k.startswith(("decoder", "mask_token"))
    }
    torch.save({"model": encoder}, pretrained)  # the official pretrain files: the encoder under "model"
    for size in ("base", "large", "huge"):
        classifier = mae.create_classifier("vit_tiny_patch8", num_classes=2, img_size=32)
        torch.save({"model": classifier.state_dict()}, root / f"mae_finetuned_vit_{size}.pth")
    return {
        "IMAGENET_DIR": str(data),
        "PRETRAIN_CHKPT": str(pretrained),
        "JOB_DIR": str(root / "jobs"),
        "root": root,
    }


def as_written(command, places):
    """(job, argv) of an official command: its script's flags, with ${...} set and the files made local."""
    words = shlex.split(command.replace("\\\n", " "))
    script = next(i for i, word in enumerate(words) if word in SCRIPTS)
    argv = [re.sub(r"\$\{(\w+)\}", lambda m: places[m[1]], word) for word in words[script + 1 :]]
    argv = [str(places["root"] / w) if w.startswith("mae_finetuned_") else w for w in argv]
    job = SCRIPTS[words[script]]
    return job, words[script].startswith("submitit_"), argv


@pytest.mark.parametrize("command", OFFICIAL_COMMANDS, ids=lambda c: " ".join(c.split()[:8])[:60])
def test_official_command_parses_and_takes_its_first_step(command, places, tmp_path, capsys):
    job, on_slurm, argv = as_written(command, places)
    if on_slurm:
        submit.parse_args(["--job", job, *argv])  # verbatim: nothing appended yet
        args = submit.parse_args(["--job", job, *argv, *tiny_run(job, tmp_path)])
        args = submit.engine_args(args)
    else:
        PARSERS[job]().parse_args(argv)  # verbatim
        args = PARSERS[job]().parse_args([*argv, *tiny_run(job, tmp_path)])
    RUNNERS[job](args)
    out = capsys.readouterr().out
    if "--eval" in argv:
        assert re.search(r"^\* Acc@1 \d+\.\d{3} Acc@5 \d+\.\d{3} loss \d+\.\d{3}$", out, re.M), out
    else:
        assert mae.read_checkpoint(tmp_path / "run" / "checkpoint-last.pth")["step"] == 1


def tiny_run(job, tmp_path):
    """Flags appended after the official ones: a tiny model, the CPU, one step."""
    return ["--model", TINY[job], "--input_size", "32", "--device", "cpu", "--num_workers", "0", "--batch_size", "2",
            "--max_steps", "1", "--output_dir", str(tmp_path / "run")]  # fmt: skip


@pytest.mark.parametrize("job", list(OTHER_OFFICIAL_FLAGS))
def test_every_other_official_flag_is_accepted(job, places):
    args = PARSERS[job]().parse_args(shlex.split(OTHER_OFFICIAL_FLAGS[job]))
    assert args.pin_mem is False and args.local_rank == 0  # the last of --pin_mem / --no_pin_mem wins
    if job == "finetune":
        assert (args.color_jitter, args.cutmix_minmax, args.resplit) == (0.4, [0.2, 0.8], True)
    slurm = submit.parse_args(["--job", job, "--use_volta32", "--comment", "ablation", "--timeout", "60",
                               "--partition", "dev", "--job_dir", "jobs"])  # fmt: skip
    assert (slurm.use_volta32, slurm.comment, slurm.timeout, slurm.partition) == (True, "ablation", 60, "dev")
    assert "use_volta32" not in vars(submit.engine_args(slurm))


def test_official_flags_that_change_training_reach_timm(places):
    """--color_jitter goes to timm's transform (which, as in the official code, ignores it under RandAugment);
    --cutmix_minmax turns cutmix on with that area range."""
    from mae.data.labelled import load_labelled

    data = load_labelled(places["IMAGENET_DIR"])
    args = finetune.get_args_parser().parse_args(
        ["--color_jitter", "0.4", "--aa", "none", "--input_size", "32"]
    )
    names = [type(t).__name__ for t in finetune.train_transform(args, data).transforms]
    assert "ColorJitter" in names
    args = finetune.get_args_parser().parse_args(["--cutmix_minmax", "0.2", "0.8", "--nb_classes", "2"])
    mixup = finetune.mixup_from_args(args)
    assert mixup.cutmix_minmax == [0.2, 0.8] and mixup.cutmix_alpha == 1.0  # timm turns cutmix on


def test_logs_read_as_the_official_ones(places, tmp_path, capsys):
    """log.txt (one JSON object per epoch), the evaluation lines, Max accuracy, and epochs from 0 everywhere."""
    out = tmp_path / "ft"
    finetune.main(["--model", "vit_tiny_patch8", "--input_size", "32", "--data_path", places["IMAGENET_DIR"],
                   "--epochs", "2", "--warmup_epochs", "1", "--batch_size", "4", "--device", "cpu",
                   "--num_workers", "0", "--save_epochs", "1", "--save_best", "--output_dir", str(out)])  # fmt: skip
    printed = capsys.readouterr()
    lines = [json.loads(line) for line in (out / "log.txt").read_text().splitlines()]
    assert [set(line) for line in lines] == [
        {"train_lr", "train_loss", "test_loss", "test_acc1", "test_acc5", "epoch", "n_parameters"}
    ] * 2
    assert [line["epoch"] for line in lines] == [0, 1]
    assert len(re.findall(r"^\* Acc@1 \d+\.\d{3} Acc@5 \d+\.\d{3} loss \d+\.\d{3}$", printed.out, re.M)) == 2
    assert re.findall(r"^Accuracy of the network on the 4 test images: \d+\.\d%$", printed.out, re.M)
    assert re.findall(r"^Max accuracy: \d+\.\d\d%$", printed.out, re.M)
    assert "2 classes (the classes in --data_path (the official default is 1000))" in printed.out
    assert sorted(p.name for p in out.glob("checkpoint-*.pth")) == [
        "checkpoint-0.pth", "checkpoint-1.pth", "checkpoint-best.pth", "checkpoint-last.pth"
    ]  # fmt: skip
    assert "epoch 0" in printed.err and "epoch 1" in printed.err  # the progress bars
    epochs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in epochs if r["kind"] == "epoch"] == [0, 1]

    pre = tmp_path / "pre"
    pretrain.main(pretrain.get_args_parser().parse_args(
        ["--model", "mae_vit_tiny_patch8", "--input_size", "32", "--data_path", places["IMAGENET_DIR"], "--epochs",
         "1", "--batch_size", "4", "--device", "cpu", "--num_workers", "0", "--output_dir", str(pre)]))  # fmt: skip
    assert set(json.loads((pre / "log.txt").read_text())) == {"train_lr", "train_loss", "epoch"}


def test_warm_up_longer_than_the_run_is_warned(places, tmp_path, capsys):
    finetune.main(["--model", "vit_tiny_patch8", "--input_size", "32", "--data_path", places["IMAGENET_DIR"],
                   "--epochs", "4", "--batch_size", "4", "--device", "cpu", "--num_workers", "0", "--max_steps", "1",
                   "--output_dir", str(tmp_path)])  # fmt: skip
    assert (
        "warning: --warmup_epochs 5 >= --epochs 4: the learning rate never reaches its peak"
        in capsys.readouterr().out
    )
