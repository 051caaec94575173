"""The training loop (mae.engine.loop): each logged loss the mean of its step's micro-batches; a non-finite
loss stops the run at its step, keeping the last good checkpoint or saying there is none.
"""

import json

import pytest
import torch
from helpers import CLASSIFIER, LAST, make_folder, pretrain_command, run_here

import mae
from mae import finetune, pretrain
from mae.data.pretraining import build_pretrain_dataset, collate_skipping_unreadable
from mae.engine.data import ResumableSampler


def test_each_logged_loss_is_the_mean_of_its_own_micro_batches(tmp_path):
    """--accum_iter 4 on 14 micro-batches per epoch (1,437 digits, 100 a batch): the 2 left over are skipped
    (not computed), and every logged loss, across the epoch boundary too, is the mean of its step's micro-batch
    losses, recomputed here by hand. --lr 0 keeps the weights at their initial values."""
    argv = ["--model", "mae_vit_tiny_patch8", "--input_size", "32", "--data_path", "builtin:digits",
            "--batch_size", "100", "--accum_iter", "4", "--lr", "0", "--warmup_epochs", "0", "--epochs", "2",
            "--max_steps", "5", "--log_every", "1", "--device", "cpu", "--num_workers", "0",
            "--output_dir", str(tmp_path)]  # fmt: skip
    args = pretrain.get_args_parser().parse_args(argv)
    computed = []
    built = mae.models.components().MAE  # the class the job builds

    def count_forward(module, inputs, output):  # a forward hook on every module, for this run only
        if isinstance(module, built):
            computed.append(1)

    hook = torch.nn.modules.module.register_module_forward_hook(count_forward)
    try:
        model = pretrain.main(args)
    finally:
        hook.remove()
    assert len(computed) == 5 * 4 + 1  # 20 micro-batches trained, and the first epoch's reconstruction figure

    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    logged = [r["loss"] for r in records if r["kind"] == "train"]
    dataset = build_pretrain_dataset("builtin:digits", 32, model.patch_embed.num_patches, 1, args.seed)
    sampler = ResumableSampler(dataset, 1, 0, args.seed)
    by_hand = []
    model.eval()  # no dropout in MAE pretraining: train and eval compute the same loss
    with torch.no_grad():
        for epoch, steps in ((0, 3), (1, 2)):
            dataset.set_epoch(epoch)
            sampler.set_epoch(epoch)
            order = list(sampler)
            for step in range(steps):
                micro = []
                for m in range(4):
                    first = (step * 4 + m) * 100
                    imgs, noise = pretrain.batch_to_device(
                        collate_skipping_unreadable([dataset[i] for i in order[first : first + 100]]), "cpu"
                    )
                    micro.append(model(imgs, mask_ratio=0.75, noise=noise)[0].item())
                by_hand.append(sum(micro) / 4)
    assert logged == pytest.approx(by_hand, rel=1e-5)


@pytest.mark.integration
def test_non_finite_loss_stops_with_the_step_and_keeps_the_checkpoint(tmp_path):
    data = make_folder(tmp_path / "data", count=16, corrupt=False)
    out = tmp_path / "run"
    with pytest.raises(FloatingPointError, match=r"loss is .* at step \d+ .*The last good checkpoint"):
        run_here(
            pretrain_command(
                data, out, "--lr", "1e30", "--warmup_epochs", "0", "--save_every", "1", "--max_steps", "20"
            )
        )
    checkpoint = mae.read_checkpoint(out / "checkpoint-last.pth")
    assert all(torch.isfinite(v).all() for v in checkpoint["model"].values())


@pytest.mark.integration
def test_weights_that_overflow_under_a_finite_loss_are_never_saved(tmp_path):
    """The red team's probe: four good steps saved one by one, then a learning rate of 1e39. Step 5's loss is finite
    (computed before its update), its weights are not: the save is refused, checkpoint-last.pth keeps step 4, and the
    message says so truly."""
    data = make_folder(tmp_path / "data", count=16, corrupt=False)
    out = tmp_path / "run"
    run_here(pretrain_command(data, out, "--save_every", "1", "--max_steps", "4"))
    with pytest.raises(FloatingPointError, match=r"the weights hold NaN or Inf after step 5 .*whose loss was finite.*"
                                                 r"stopping without saving them\. The last good checkpoint"):  # fmt: skip
        run_here(pretrain_command(data, out, "--save_every", "1", "--max_steps", "8", "--lr", "1e39",
                                  "--allow_changed_args"))  # fmt: skip
    checkpoint = mae.read_checkpoint(out / "checkpoint-last.pth")
    assert checkpoint["step"] == 4
    assert all(torch.isfinite(v).all() for v in checkpoint["model"].values())
    with pytest.raises(
        FloatingPointError, match=r"loss is nan at step 6 .*checkpoint-last.pth, is untouched"
    ):
        run_here(pretrain_command(data, out, "--max_steps", "8", "--lr", "1e39", "--allow_changed_args",
                                  "--save_every", "1000"))  # the epoch-end save at step 6 meets the NaN  # fmt: skip
    run_here(pretrain_command(data, out, "--save_every", "1", "--max_steps", "6"))  # resumes from step 4
    assert mae.read_checkpoint(out / "checkpoint-last.pth")["step"] == 6


@pytest.mark.integration
def test_a_nan_stop_before_any_checkpoint_says_there_is_none(tmp_path):
    mae.save_checkpoint(tmp_path / "mae.pth", mae.mae_vit_mini_patch8(img_size=32, in_chans=1))
    out = tmp_path / "ft"
    with pytest.raises(
        FloatingPointError, match=r"at step \d+ .*No checkpoint was written before it .*does not exist"
    ):
        finetune.main([*CLASSIFIER, "--finetune", str(tmp_path / "mae.pth"), "--lr", "1e30", "--warmup_epochs", "0",
                       "--max_steps", "20", "--output_dir", str(out)])  # fmt: skip
    assert not (out / LAST).exists()
