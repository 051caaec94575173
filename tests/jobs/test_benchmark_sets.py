"""The robustness benchmarks' layouts, class subsets and arithmetic (mae.benchmarks), each against a hand
computation on a small folder in the benchmark's real layout."""

import pytest
import torch

from mae import benchmarks
from mae.benchmarks import ALEXNET_ERROR, CORRUPTIONS, EXTRA_CORRUPTIONS, LayoutError


def test_the_benchmark_has_15_corruptions_each_with_alexnets_error():
    assert len(CORRUPTIONS) == 15 and set(ALEXNET_ERROR) == set(CORRUPTIONS)
    assert not set(EXTRA_CORRUPTIONS) & set(CORRUPTIONS)
    assert ALEXNET_ERROR["gaussian_noise"] == 0.886428 and ALEXNET_ERROR["jpeg_compression"] == 0.6065


def test_mce_and_mean_error_from_a_known_table():
    # Every severity of every corruption at 40% error, except gaussian_noise: 10%, 20%, ..., 50% (mean 30%).
    errors = {(c, s): 0.4 for c in CORRUPTIONS for s in range(1, 6)}
    errors.update({("gaussian_noise", s): s / 10 for s in range(1, 6)})
    errors.update({("spatter", s): 0.25 for s in range(1, 6)})  # an extra corruption: reported apart
    summary = benchmarks.corruption_summary(errors)
    assert summary["corruption_error"]["gaussian_noise"] == pytest.approx(30.0)
    assert summary["ce"]["gaussian_noise"] == pytest.approx(100 * 0.3 / 0.886428)
    by_hand = (0.3 / 0.886428 + sum(0.4 / ALEXNET_ERROR[c] for c in CORRUPTIONS[1:])) / 15
    assert summary["mce"] == pytest.approx(100 * by_hand)
    assert summary["mean_error"] == pytest.approx(100 * (0.3 + 14 * 0.4) / 15)
    assert summary["extra_error"] == {"spatter": pytest.approx(25.0)} and "spatter" not in summary["ce"]


def test_without_all_15_corruptions_there_is_no_mce_but_the_others_errors_remain():
    errors = {(c, s): 0.5 for c in CORRUPTIONS[:14] for s in range(1, 6)}
    errors.update({("jpeg_compression", s): 0.5 for s in range(1, 5)})  # severity 5 missing
    summary = benchmarks.corruption_summary(errors)
    assert summary["mce"] is None and summary["mean_error"] is None
    assert len(summary["ce"]) == 14 and "jpeg_compression" not in summary["corruption_error"]
    with pytest.raises(ValueError, match="fog/3: an error is a fraction from 0 to 1, got 40"):
        benchmarks.corruption_summary({("fog", 3): 40})


def test_a_baseline_of_ones_own_and_the_relative_ce_by_hand():
    # The model: 20% on every set, clean 10%. The baseline: 50% on every set but fog (60%), clean 40%.
    model = {(c, s): 0.2 for c in CORRUPTIONS for s in range(1, 6)}
    baseline_table = {(c, s): 0.5 for c in CORRUPTIONS for s in range(1, 6)}
    baseline_table.update({("fog", s): 0.6 for s in range(1, 6)})
    baseline = benchmarks.baseline_errors(baseline_table)
    assert baseline["fog"] == pytest.approx(0.6) and baseline["snow"] == pytest.approx(0.5)
    summary = benchmarks.corruption_summary(model, baseline, clean_error=(0.1, 0.4))
    assert summary["ce"]["fog"] == pytest.approx(100 * 0.2 / 0.6) and summary["ce"]["snow"] == pytest.approx(
        40.0
    )
    assert summary["mce"] == pytest.approx(100 * (14 * 0.2 / 0.5 + 0.2 / 0.6) / 15)
    # (0.2 - 0.1) / (0.5 - 0.4) = 1 for 14 corruptions, (0.2 - 0.1) / (0.6 - 0.4) = 0.5 for fog
    assert summary["relative_ce"]["snow"] == pytest.approx(100.0) and summary["relative_ce"][
        "fog"
    ] == pytest.approx(50.0)
    assert summary["relative_mce"] == pytest.approx(100 * (14 + 0.5) / 15)
    itself = benchmarks.corruption_summary(baseline_table, baseline, clean_error=(0.4, 0.4))
    assert itself["mce"] == pytest.approx(100.0) and itself["relative_mce"] == pytest.approx(100.0)
    assert "relative_ce" not in benchmarks.corruption_summary(model)  # AlexNet's: no clean errors given
    unmoved = {
        **baseline,
        "fog": 0.4,
    }  # the baseline loses nothing to fog: no relative CE there, no relative mCE
    summary = benchmarks.corruption_summary(model, unmoved, clean_error=(0.1, 0.4))
    assert (
        summary["relative_ce"]["fog"] is None
        and summary["relative_mce"] is None
        and summary["mce"] is not None
    )
    with pytest.raises(
        ValueError, match="fog: a baseline or clean error is a fraction from 0 to 1, got 60.0"
    ):
        benchmarks.corruption_summary(model, {**baseline, "fog": 60.0})  # percent where fractions belong


def make_imagenet_c(
    root, corruptions=CORRUPTIONS, severities=range(1, 6), classes=("n01440764", "n01443537")
):
    for name in corruptions:
        for severity in severities:
            for wnid in classes:
                (root / name / str(severity) / wnid).mkdir(parents=True)
    return root


def test_every_corruption_and_severity_of_imagenet_c_is_found(tmp_path):
    root = make_imagenet_c(tmp_path / "imagenet-c", corruptions=(*CORRUPTIONS, "saturate"))
    found = benchmarks.corruption_folders(root)
    assert len(found) == 16 * 5 and found[("saturate", 2)] == root / "saturate" / "2"


def test_a_missing_corruption_or_severity_is_named_and_the_rest_is_kept(tmp_path):
    root = make_imagenet_c(tmp_path / "c", corruptions=CORRUPTIONS[:-1])  # no jpeg_compression at all
    (root / "fog" / "4").rename(root / "fog" / "four")
    with pytest.raises(LayoutError) as raised:
        benchmarks.corruption_folders(root)
    message = str(raised.value)
    assert "lacks corruptions jpeg_compression; severities fog/4" in message
    assert "the mCE needs all 15 benchmark corruptions" in message
    assert len(raised.value.present) == 13 * 5 + 4
    with pytest.raises(LayoutError, match="is not a folder"):
        benchmarks.corruption_folders(tmp_path / "nowhere")


def test_imagenet_a_and_r_are_timms_200_classes_and_a_class_outside_never_wins():
    every = benchmarks.imagenet_synsets()
    assert len(every) == 1000 and every[0] == "n01440764" and every == sorted(every)
    for name in ("a", "r"):
        indices, synsets = benchmarks.subset(name)
        assert len(indices) == 200 and [every[i] for i in indices] == synsets
    indices, _ = benchmarks.subset("a")
    logits = torch.zeros(2, 1000)
    outside = next(i for i in range(1000) if i not in indices)
    logits[:, outside] = 100.0  # the 1000-way arg-max, outside ImageNet-A's classes
    logits[0, indices[7]], logits[1, indices[199]] = 5.0, 3.0
    assert benchmarks.restrict(logits, indices).argmax(1).tolist() == [7, 199]
    with pytest.raises(ValueError, match="ImageNet subsets are 'a' and 'r'"):
        benchmarks.subset("c")
    with pytest.raises(ValueError, match=r"at least \d+ classes, got \(2, 10\)"):
        benchmarks.restrict(torch.zeros(2, 10), indices)


def test_folders_are_mapped_to_outputs_by_name_and_an_unknown_folder_is_named():
    names = ("n01", "n02", "n03", "n04")
    assert benchmarks.output_index(["n04", "n02"], names, "sketch/") == {"n04": 3, "n02": 1}
    with pytest.raises(LayoutError, match=r"sketch/: the class folder\(s\) n99, zebra match no class of the "
                                          r"classifier \(4 classes, n01 to n04\)"):  # fmt: skip
        benchmarks.output_index(["n01", "zebra", "n99"], names, "sketch/")
