"""Fine-tuning (mae.finetune): layer-wise learning-rate decay as in the official code."""

import pytest
import torch
from timm.optim import param_groups_layer_decay

import mae


@pytest.mark.parametrize("global_pool", [True, False])
def test_layer_decay_scales_are_the_official_ones(global_pool):
    """timm's groups with our group_matcher: lr x decay^(depth + 1 - layer), layer 0 = embeddings."""
    model = mae.create_classifier("vit_mini_patch8", num_classes=10, global_pool=global_pool)  # depth 4
    groups = torch.optim.AdamW(
        param_groups_layer_decay(model, 0.05, model.no_weight_decay(), layer_decay=0.5)
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


@pytest.mark.parametrize("minmax", [[0.5], [0.8, 0.2], [0.0, 0.5]])
def test_cutmix_minmax_takes_two_ordered_area_ratios(minmax):
    from mae import finetune

    args = finetune.get_args_parser().parse_args(["--cutmix_minmax", *map(str, minmax)])
    with pytest.raises(ValueError, match=r"--cutmix_minmax takes two area ratios, min then max"):
        finetune.mixup_from_args(args)
