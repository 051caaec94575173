"""The three jobs' optimizers are the official code's: the same parameter groups, in the same order, with the same
settings and state, so that an optimizer state saved by the official main_pretrain.py, main_finetune.py or
main_linprobe.py resumes here, each moment on the tensor it belongs to, and the next step is the official one.

The official groups are written here from the official code's rules, by parameter name, apart from the jobs' code:
- pretraining (timm 0.3.2's add_weight_decay, as main_pretrain.py calls it): the trainable tensors in order, no
  decay for 1-D tensors and names ending in .bias, the groups [no decay, decay] (the CLS and mask tokens decay);
- fine-tuning (the official param_groups_lrd): layer 0 is cls_token, pos_embed and patch_embed.*, blocks.i is
  layer i + 1, the rest depth + 1; lr_scale = layer_decay ** (depth + 1 - layer); no decay for 1-D tensors and the
  model's no_weight_decay(); one group per (layer, decay), in the order first met;
- linear probing (main_linprobe.py): the official LARS over head.parameters(), one group, state 'mu' per tensor.
The official files were saved by the PyTorch of 2021: integer steps and the group keys of that time only.
"""

import argparse
import copy
import json

import pytest
import torch
from helpers import FIXTURES, LAST, SMALL_CLASSIFIER, TINY, flags, golden_model, pretrain_here
from timm.optim import param_groups_weight_decay

import mae
from mae import finetune, linprobe, pretrain
from mae.checkpoint import read_checkpoint
from mae.data.labelled import load_labelled
from mae.engine.distributed import Context
from mae.evaluation import Lars

OLD_GROUP_KEYS = {  # what torch 1.8's optimizers wrote in each group
    torch.optim.AdamW: ("lr", "betas", "eps", "weight_decay", "amsgrad", "params"),
    Lars: ("lr", "weight_decay", "momentum", "trust_coefficient", "params"),
}


def official_pretraining_groups(model, weight_decay):
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if len(param.shape) == 1 or name.endswith(".bias") else decay).append(name)
    return [(no_decay, 0.0, None), (decay, weight_decay, None)]  # (names, weight decay, lr_scale)


def official_fine_tuning_groups(model, weight_decay, layer_decay):
    layers = len(model.blocks) + 1
    groups = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name in ("cls_token", "pos_embed") or name.startswith("patch_embed"):
            layer = 0
        elif name.startswith("blocks."):
            layer = int(name.split(".")[1]) + 1
        else:
            layer = layers
        no_decay = param.ndim == 1 or name in model.no_weight_decay()
        key = (layer, no_decay)
        if key not in groups:
            groups[key] = ([], 0.0 if no_decay else weight_decay, layer_decay ** (layers - layer))
        groups[key][0].append(name)
    return list(groups.values())


def names_of(optimizer, model):
    """The optimizer's groups as (parameter names, weight decay, lr_scale)."""
    name = {id(p): n for n, p in model.named_parameters()}
    return [
        ([name[id(p)] for p in g["params"]], g["weight_decay"], g.get("lr_scale"))
        for g in optimizer.param_groups
    ]


def as_saved_in_2021(optimizer):
    """optimizer.state_dict() as the official code's PyTorch wrote it: integer steps, the old group keys."""
    state = copy.deepcopy(optimizer.state_dict())  # state_dict() shares the optimizer's own state dicts
    for moments in state["state"].values():
        if "step" in moments:
            moments["step"] = int(moments["step"])
    keys = (*OLD_GROUP_KEYS[type(optimizer)], "lr_scale")  # lr_scale: the official fine-tuning's own key
    state["param_groups"] = [{k: g[k] for k in keys if k in g} for g in state["param_groups"]]
    return state


def official_optimizer(model, groups, kind, **settings):
    params = dict(model.named_parameters())
    return kind([{"params": [params[n] for n in names], "weight_decay": wd, **({"lr_scale": s} if s else {})}
                 for names, wd, s in groups], **settings)  # fmt: skip


def assert_same_state(ours, our_model, theirs, their_model):
    """Every tensor's optimizer state in `ours` is the one `theirs` holds for the tensor of the same name."""
    their_params = dict(their_model.named_parameters())
    for name, param in our_model.named_parameters():
        if param.requires_grad:
            mine, official = ours.state[param], theirs.state[their_params[name]]
            assert mine.keys() == official.keys(), name
            for key in official:
                assert torch.equal(torch.as_tensor(mine[key]).float(), torch.as_tensor(official[key]).float()), (name, key)  # fmt: skip


def step(optimizer, model, loss_of):
    optimizer.zero_grad()
    loss_of(model).backward()
    optimizer.step()


def digits_loss():
    """A classifier's cross-entropy on four fixed random 32-pixel digit-shaped images."""
    images, labels = torch.randn(4, 1, 32, 32), torch.tensor([0, 1, 2, 3])
    return lambda classifier: torch.nn.functional.cross_entropy(classifier(images), labels)


def step_both(ours, our_model, theirs, their_model, loss_of):
    for optimizer, model in ((ours, our_model), (theirs, their_model)):
        step(optimizer, model, loss_of)
    their_params = dict(their_model.named_parameters())
    for name, param in our_model.named_parameters():
        assert torch.equal(param, their_params[name]), f"{name} differs from the official step"


# --------------------------------------------------------------------------- pretraining


def test_pretraining_groups_are_the_official_ones_for_the_golden_and_the_published_models(golden):
    models = [golden_model(case) for case in golden["cases"]]
    for name in json.loads((FIXTURES / "official_state_dict_shapes.json").read_text()):
        with torch.device("meta"):  # ViT-B/L/H: names and shapes, no memory
            models.append(getattr(mae, name)())
    for model in models:
        groups = pretrain.param_groups(model, 0.05)
        ours = names_of(torch.optim.AdamW(groups), model)
        assert ours == official_pretraining_groups(model, 0.05)
        assert "cls_token" in ours[1][0] and "mask_token" in ours[1][0]  # decayed in pretraining
        assert not {"pos_embed", "decoder_pos_embed"} & {n for names, _, _ in ours for n in names}  # frozen
        timm_groups = param_groups_weight_decay(model, 0.05)  # what the newer official code calls
        assert ours == names_of(torch.optim.AdamW(timm_groups), model)
    model = models[0]  # no weight decay at all: still both groups, so the file's shape does not depend on it
    assert [len(g["params"]) for g in pretrain.param_groups(model, 0.0)] == [
        len(names) for names, _, _ in official_pretraining_groups(model, 0.0)
    ]


def test_an_official_pretraining_optimizer_state_resumes_and_the_next_step_is_the_official_one(golden):
    case = golden["cases"][1]  # norm_pix_loss
    official_model = golden_model(case).train()
    official = official_optimizer(official_model, official_pretraining_groups(official_model, 0.05),
                                  torch.optim.AdamW, lr=1e-3, betas=(0.9, 0.95))  # fmt: skip

    def loss_of(model):
        return model(case["imgs"], mask_ratio=case["mask_ratio"], noise=case["noise"])[0]

    for _ in range(2):
        step(official, official_model, loss_of)
    model = mae.MAE(**case["config"]).train()
    model.load_state_dict(official_model.state_dict())
    ours = pretrain.make_optimizer(model, argparse.Namespace(weight_decay=0.05, lr=1e-3), torch.device("cpu"))
    ours.load_state_dict(as_saved_in_2021(official))
    assert_same_state(ours, model, official, official_model)
    step_both(ours, model, official, official_model, loss_of)  # the CLS and mask tokens decay as officially


@pytest.mark.integration
def test_the_pretraining_job_continues_an_official_checkpoint(tmp_path, capsys):
    """An official checkpoint-0.pth (model, optimizer, scaler, epoch, args) goes on at epoch 1, its moments kept."""
    args = pretrain.get_args_parser().parse_args([*TINY, "--data_path", "builtin:digits"])
    model = mae.create_model(args.model, img_size=32, in_chans=1)
    official = official_optimizer(model, official_pretraining_groups(model, 0.05), torch.optim.AdamW,
                                  lr=1e-4, betas=(0.9, 0.95))  # fmt: skip
    images = torch.randn(2, 1, 32, 32)
    model(images)[0].backward()
    official.step()
    path = tmp_path / "checkpoint-0.pth"
    scaler = {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000, "_growth_tracker": 0}  # fmt: skip
    torch.save({"model": model.state_dict(), "optimizer": as_saved_in_2021(official), "epoch": 0,
                "scaler": scaler, "args": argparse.Namespace(model=args.model, mask_ratio=0.75)}, path)  # fmt: skip
    out = tmp_path / "run"
    pretrain.main(pretrain.get_args_parser().parse_args([
        *TINY, "--data_path", "builtin:digits", "--output_dir", str(out), "--resume", str(path), "--max_steps", "2"]))  # fmt: skip
    assert f"resuming at epoch 1 step 0 from {path}" in capsys.readouterr().out
    saved = read_checkpoint(out / LAST)
    steps = {int(moments["step"]) for moments in saved["optimizer"]["state"].values()}
    assert steps == {1 + 2}  # the official step, then two here: the moments went on, not from zero


# --------------------------------------------------------------------------- fine-tuning


@pytest.mark.parametrize("global_pool", [True, False])
def test_fine_tuning_groups_and_state_are_the_official_ones(global_pool):
    args = finetune.get_args_parser().parse_args([*SMALL_CLASSIFIER, "--layer_decay", "0.65", "--lr", "1e-3",
                                                  "--drop_path", "0", *([] if global_pool else ["--cls_token"])])  # fmt: skip
    args.nb_classes = 10
    model, ours, _, _ = finetune.build(args, Context(), load_labelled("builtin:digits"))
    official_groups = official_fine_tuning_groups(model, 0.05, 0.65)
    assert [(n, wd, pytest.approx(s)) for n, wd, s in names_of(ours, model)] == official_groups
    official_model = mae.create_classifier(args.model, num_classes=10, global_pool=global_pool, img_size=32, in_chans=1)  # fmt: skip
    official_model.load_state_dict(model.state_dict())
    official = official_optimizer(official_model, official_groups, torch.optim.AdamW, lr=1e-3)
    loss_of = digits_loss()
    step(official, official_model, loss_of)
    model.load_state_dict(official_model.state_dict())
    ours.load_state_dict(as_saved_in_2021(official))
    assert_same_state(ours, model, official, official_model)
    for group in ours.param_groups:  # the schedule sets lr from lr_scale, as officially
        group["lr"] = 1e-3 * group["lr_scale"]
    for group in official.param_groups:
        group["lr"] = 1e-3 * group["lr_scale"]
    step_both(ours, model, official, official_model, loss_of)


# --------------------------------------------------------------------------- linear probing


def test_linear_probing_has_the_official_lars_group_and_state():
    args = linprobe.get_args_parser().parse_args([*SMALL_CLASSIFIER, "--lr", "0.1"])
    args.nb_classes = 10
    model, ours, _, _ = linprobe.build(args, Context(), load_labelled("builtin:digits"))
    assert names_of(ours, model) == [(["head.1.weight", "head.1.bias"], 0.0, None)]
    official_model = mae.create_classifier(
        args.model, num_classes=10, global_pool=args.global_pool, img_size=32, in_chans=1
    )
    official_model.head = linprobe.probe_head(official_model.head.in_features, 10)
    official_model.load_state_dict(model.state_dict())
    for name, param in official_model.named_parameters():
        param.requires_grad = name.startswith("head.")
    official = Lars(official_model.head.parameters(), lr=0.1, weight_decay=0.0)
    loss_of = digits_loss()
    step(official, official_model, loss_of)
    model.load_state_dict(official_model.state_dict())
    saved = as_saved_in_2021(official)
    assert [set(moments) for moments in saved["state"].values()] == [{"mu"}, {"mu"}]
    ours.load_state_dict(saved)
    assert_same_state(ours, model, official, official_model)
    step_both(ours, model, official, official_model, loss_of)


def test_lars_steps_as_the_official_one():
    """Numbers worked by hand. A matrix: the step g + wd * w rescaled by 0.001 * |w| / |g + wd * w| (timm's Lars
    divides by |g| + wd * |w|: 0.0025 here, not 0.0035355); a bias: its plain gradient, no decay; momentum 0.9."""
    weight = torch.nn.Parameter(torch.tensor([[3.0, 4.0]]))  # |w| = 5
    bias = torch.nn.Parameter(torch.tensor([1.0]))
    zero = torch.nn.Parameter(torch.zeros(1, 2))  # |w| = 0: ratio 1
    optimizer = Lars([weight, bias, zero], lr=1.0, weight_decay=0.2)
    weight.grad, bias.grad, zero.grad = (
        torch.tensor([[0.8, -0.6]]),
        torch.tensor([0.5]),
        torch.tensor([[0.1, 0.2]]),
    )
    optimizer.step()
    update = torch.tensor([[1.4, 0.2]]) * (0.005 / 2**0.5)  # g + 0.2 w = (1.4, 0.2), |.| = sqrt(2)
    torch.testing.assert_close(weight.detach(), torch.tensor([[3.0, 4.0]]) - update)
    torch.testing.assert_close(bias.detach(), torch.tensor([0.5]))
    torch.testing.assert_close(zero.detach(), torch.tensor([[-0.1, -0.2]]))
    bias.grad = torch.tensor([0.0])
    optimizer.step()  # momentum alone moves the bias: mu = 0.9 * 0.5
    torch.testing.assert_close(bias.detach(), torch.tensor([0.5 - 0.45]))


@pytest.mark.integration
def test_a_pretraining_run_saved_here_with_the_earlier_groups_resumes(tmp_path, capsys):
    """Until December 2026 the CLS and mask tokens sat in the no-decay group: such a checkpoint-last.pth resumes,
    each tensor's moments on that tensor."""
    out = tmp_path / "run"
    pretrain_here(flags(out, "--max_steps", "2"))
    checkpoint = torch.load(out / LAST, weights_only=False)
    model = mae.create_model("mae_vit_tiny_patch8", img_size=32, in_chans=1)
    now = [n for names, _, _ in official_pretraining_groups(model, 0.05) for n in names]
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    then = [n for n, p in trainable if p.ndim <= 1 or n.endswith("_token")]  # the earlier groups, model order
    then += [n for n, p in trainable if not (p.ndim <= 1 or n.endswith("_token"))]
    earlier = {"state": {then.index(n): checkpoint["optimizer"]["state"][i] for i, n in enumerate(now)},
               "param_groups": [dict(checkpoint["optimizer"]["param_groups"][0]), dict(checkpoint["optimizer"]["param_groups"][1])]}  # fmt: skip
    tokens = sum(n.endswith("_token") for n in now)
    first = len(checkpoint["optimizer"]["param_groups"][0]["params"]) + tokens
    earlier["param_groups"][0]["params"] = list(range(first))
    earlier["param_groups"][1]["params"] = list(range(first, len(now)))
    torch.save({**checkpoint, "optimizer": earlier}, out / LAST)
    pretrain_here(flags(out, "--max_steps", "3"))
    assert "resuming at epoch 0 step 2" in capsys.readouterr().out
    resumed = read_checkpoint(out / LAST)["optimizer"]
    assert [len(g["params"]) for g in resumed["param_groups"]] == [
        len(g["params"]) for g in checkpoint["optimizer"]["param_groups"]
    ]
    assert {int(m["step"]) for m in resumed["state"].values()} == {3}
    shapes = [dict(trainable)[n].shape for n in now]  # the official groups' order
    assert [resumed["state"][i]["exp_avg"].shape for i in range(len(now))] == shapes  # each on its own tensor


def test_moments_of_another_shape_are_refused_not_stepped(golden, tmp_path):
    """torch's load_state_dict does not compare shapes, and a fused or foreach step over a moment of another shape
    reads past its memory (the process crashed in GC): a state whose moments are swapped is an error naming them."""
    from mae.checkpoint import CheckpointError
    from mae.engine.resume import load_training_state

    case = golden["cases"][0]
    model = golden_model(case).train()
    optimizer = pretrain.make_optimizer(
        model, argparse.Namespace(weight_decay=0.05, lr=1e-3), torch.device("cpu")
    )
    model(case["imgs"], mask_ratio=case["mask_ratio"], noise=case["noise"])[0].backward()
    optimizer.step()
    state = copy.deepcopy(optimizer.state_dict())
    j = len(state["param_groups"][0]["params"])  # the first decayed tensor, the CLS token; 0 is a bias
    state["state"][0], state["state"][j] = state["state"][j], state["state"][0]
    assert state["state"][0]["exp_avg"].shape != state["state"][j]["exp_avg"].shape
    fresh = pretrain.make_optimizer(
        model, argparse.Namespace(weight_decay=0.05, lr=1e-3), torch.device("cpu")
    )
    with pytest.raises(CheckpointError, match=r"does not fit this job's optimizer: its 'exp_avg' of shape"):
        load_training_state({"model": model.state_dict(), "optimizer": state}, "x.pth", model, fresh, None)
