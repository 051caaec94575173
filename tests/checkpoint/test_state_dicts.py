"""State dicts (mae.checkpoint.state_dicts): position tables resized, mismatches described (a head of another
size first), non-finite weights refused by name wherever a job reads them.
"""

import pytest
import torch
from helpers import CLASSIFIER, flags, pretrain_here

import mae
from mae import finetune
from mae.checkpoint import CheckpointError, describe_mismatch


def test_resize_pos_embed_reproduces_a_smooth_table():
    table = mae.get_2d_sincos_pos_embed(64, 8, cls_token=True).float().unsqueeze(0)
    same = mae.resize_pos_embed(table, (8, 8))
    assert same is table
    wide = mae.resize_pos_embed(table, (8, 16))
    assert wide.shape == (1, 1 + 128, 64)
    back = mae.resize_pos_embed(wide, (8, 8), old_grid=(8, 16))
    assert (back - table).abs().max() < 0.2  # bicubic there and back stays close
    with pytest.raises(ValueError, match="square grid"):
        mae.resize_pos_embed(table[:, :-1], (4, 4))


def test_a_head_of_another_size_is_named_first():
    checkpoint = mae.create_classifier("vit_tiny_patch8", num_classes=1000).state_dict()
    model = mae.create_classifier("vit_tiny_patch8", num_classes=4).state_dict()
    problems = describe_mismatch(model, checkpoint)
    assert problems == [
        "the classifier head has 1000 classes in the checkpoint, 4 in the model (head.weight (1000, 192) vs "
        "(4, 192)): build the model with num_classes=1000 (--nb_classes 1000 on the command line), or evaluate "
        "on data with 1000 classes"
    ]


def test_non_finite_weights_are_refused_by_name(tmp_path):
    classifier = mae.create_classifier("vit_mini_patch8", num_classes=10, img_size=32, in_chans=1)
    with torch.no_grad():
        classifier.head.weight[0, 0] = float("nan")
        classifier.blocks[1].attn.qkv.bias[:2] = float("inf")
    torch.save({"model": classifier.state_dict()}, tmp_path / "diverged.pth")
    with pytest.raises(CheckpointError, match=r"diverged\.pth holds non-finite .* in 2 tensors: blocks\.1\.attn\.qkv"
                                              r"\.bias \(0 NaN, 2 Inf of \d+\), head\.weight \(1 NaN, 0 Inf"):  # fmt: skip
        finetune.main(
            [*CLASSIFIER, "--eval", "--resume", str(tmp_path / "diverged.pth"), "--output_dir", str(tmp_path)]
        )

    model = mae.mae_vit_tiny_patch8(img_size=32, in_chans=1)
    with torch.no_grad():
        model.blocks[0].mlp.fc1.weight[0, 0] = float("nan")
    mae.save_checkpoint(tmp_path / "mae.pth", model)
    with pytest.raises(CheckpointError, match=r"mae\.pth holds non-finite .*blocks\.0\.mlp\.fc1\.weight"):
        mae.model_from_checkpoint(tmp_path / "mae.pth")
    with pytest.raises(
        CheckpointError, match=r"--finetune .*mae\.pth holds non-finite .*blocks\.0\.mlp\.fc1"
    ):
        finetune.main([*CLASSIFIER, "--model", "vit_tiny_patch8", "--finetune", str(tmp_path / "mae.pth"),
                       "--output_dir", str(tmp_path / "ft")])  # fmt: skip
    with pytest.raises(CheckpointError, match=r"mae\.pth holds non-finite"):
        pretrain_here(flags(tmp_path / "pre", "--resume", str(tmp_path / "mae.pth")))
