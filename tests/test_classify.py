"""Linear probing and fine-tuning: the classifier, its optimiser groups, the CLIs (train, resume, evaluate)."""

import pytest
import torch

import mae
from mae import finetune, linprobe
from mae.checkpoint import CheckpointError, read_checkpoint
from mae.classify import load_pretrained_encoder
from mae.engine import parse_job_args

SMALL = ["--model", "vit_mini_patch8", "--input_size", "32", "--data_path", "builtin:digits", "--device", "cpu",
         "--num_workers", "0", "--batch_size", "16", "--warmup_epochs", "1", "--log_every", "1"]  # fmt: skip


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A digits MAE checkpoint of this project's format (random weights are enough for plumbing)."""
    path = tmp_path_factory.mktemp("pretrained") / "mae.pth"
    torch.manual_seed(0)
    mae.save_checkpoint(path, mae.mae_vit_mini_patch8(img_size=32, in_chans=1, norm_pix_loss=True))
    return path


@pytest.mark.parametrize("global_pool", [True, False])
def test_layer_decay_scales_are_the_official_ones(global_pool):
    """timm's groups with our group_matcher: lr x decay^(depth + 1 - layer), layer 0 = embeddings."""
    model = mae.create_classifier("vit_mini_patch8", num_classes=10, global_pool=global_pool)  # depth 4
    groups = torch.optim.AdamW(
        __import__("timm").optim.param_groups_layer_decay(
            model, 0.05, model.no_weight_decay(), layer_decay=0.5
        )
    ).param_groups
    scale = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    decay = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    layer = {"cls_token": 0, "pos_embed": 0, "patch_embed.proj.weight": 0, "blocks.0.attn.qkv.weight": 1,
             "blocks.3.mlp.fc2.weight": 4, "fc_norm.weight" if global_pool else "norm.weight": 5, "head.weight": 5}  # fmt: skip
    params = dict(model.named_parameters())
    for name, layer_id in layer.items():
        assert scale[id(params[name])] == pytest.approx(0.5 ** (5 - layer_id)), name
    assert decay[id(params["pos_embed"])] == decay[id(params["blocks.0.norm1.weight"])] == 0.0
    assert decay[id(params["blocks.0.attn.qkv.weight"])] == decay[id(params["head.weight"])] == 0.05


def test_linear_probe_head_and_lars_groups():
    head = linprobe.probe_head(8, 3)
    norm, linear = head
    assert isinstance(norm, torch.nn.BatchNorm1d) and not norm.affine and norm.eps == 1e-6
    assert linear.weight.std() < 0.02 and torch.all(linear.bias == 0)
    optimizer = linprobe.lars(head, 0.1, 0.0)
    assert [g["always_adapt"] for g in optimizer.param_groups] == [True, False]
    assert optimizer.param_groups[0]["params"][0] is linear.weight


def test_pretrained_encoder_loads_into_both_poolings_and_other_resolutions(pretrained):
    reference = mae.model_from_checkpoint(pretrained)
    imgs = torch.randn(2, 1, 32, 32)
    probe = mae.create_classifier(
        "vit_mini_patch8", num_classes=10, global_pool=False, img_size=32, in_chans=1
    )
    load_pretrained_encoder(probe, pretrained)
    with torch.no_grad():  # the CLS token of the unmasked encoder, through the MAE's own forward_encoder
        latent, _, _ = reference.eval().forward_encoder(imgs, mask_ratio=0.0)
        torch.testing.assert_close(probe.eval().forward_features(imgs), latent[:, 0])
    bigger = mae.create_classifier("vit_mini_patch8", num_classes=10, img_size=48, in_chans=1)
    load_pretrained_encoder(bigger, pretrained)  # 4x4 grid -> 6x6, bicubic
    assert bigger(torch.randn(2, 1, 48, 48)).shape == (2, 10)
    with pytest.raises(CheckpointError, match="another architecture"):
        load_pretrained_encoder(mae.create_classifier("vit_tiny_patch8", img_size=32, in_chans=1), pretrained)


def _weights(path):
    return read_checkpoint(path)["model"]


@pytest.mark.integration
@pytest.mark.parametrize("job", [linprobe, finetune])
def test_killed_run_resumes_exactly_and_eval_reads_the_checkpoint(job, pretrained, tmp_path):
    """Stopped after 2 steps and started again = 4 steps in one go (RandAugment, erasing, mixup, cutmix included)."""
    flags = [*SMALL, "--finetune", str(pretrained), "--epochs", "2"]
    if job is finetune:
        flags += ["--mixup", "0.8", "--cutmix", "1.0", "--drop_path", "0.1"]
    else:
        flags += ["--lr", "1.0"]
    job.main([*flags, "--max_steps", "4", "--output_dir", str(tmp_path / "whole")])
    job.main([*flags, "--max_steps", "2", "--output_dir", str(tmp_path / "parts")])
    job.main([*flags, "--max_steps", "4", "--output_dir", str(tmp_path / "parts")])
    whole, parts = (
        _weights(tmp_path / "whole" / "checkpoint-last.pth"),
        _weights(tmp_path / "parts" / "checkpoint-last.pth"),
    )
    assert whole.keys() == parts.keys()
    for key in whole:
        assert torch.equal(whole[key], parts[key]), key
    log = (tmp_path / "parts" / "log.jsonl").read_text()
    assert log.count('"kind": "train"') == 4  # the resumed run dropped nothing and redid nothing

    stats = job.main([*SMALL, "--eval", "--resume", str(tmp_path / "whole" / "checkpoint-last.pth"),
                      "--output_dir", str(tmp_path / "eval")])  # fmt: skip
    assert 0 <= stats["acc1"] <= stats["acc5"] <= 100


@pytest.mark.integration
def test_eval_reads_the_official_fine_tuned_format(tmp_path, capsys):
    """Official fine-tuned files are {"model": timm-style ViT weights with fc_norm and head}."""
    torch.manual_seed(0)
    model = mae.create_classifier("vit_mini_patch8", num_classes=10, img_size=32, in_chans=1)
    torch.save({"model": model.state_dict()}, tmp_path / "official.pth")
    stats = finetune.main(
        [*SMALL, "--eval", "--resume", str(tmp_path / "official.pth"), "--output_dir", str(tmp_path)]
    )
    assert (
        f"* Acc@1 {stats['acc1']:.3f} Acc@5 {stats['acc5']:.3f} loss {stats['loss']:.3f}"
        in capsys.readouterr().out
    )
    with pytest.raises(
        CheckpointError, match="does not fit this classifier"
    ):  # a probe checkpoint is another model
        linprobe.main(
            [*SMALL, "--eval", "--resume", str(tmp_path / "official.pth"), "--output_dir", str(tmp_path)]
        )
    with pytest.raises(ValueError, match="--eval needs --resume"):
        finetune.main([*SMALL, "--eval", "--output_dir", str(tmp_path)])


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
