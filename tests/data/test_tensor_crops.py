"""Pretraining samples from files on the tensor path (mae.data.tensor_crops): the same crop boxes, flips and noise as
torchvision's RandomResizedCrop and the PIL path, each a function of (seed, epoch, index), pixels within a bound of
PIL's bicubic, and every image format still read."""

import warnings

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import RandomResizedCrop

from mae.data.pretraining import ImageFiles, MaskedImages, build_pretrain_dataset
from mae.data.seeding import sample_seed
from mae.data.tensor_crops import FileMaskedImages, crop_box, read_uint8, sample_generator


def test_crop_boxes_are_torchvisions_for_the_same_seed_fallback_included():
    shapes = [(375, 500), (500, 333), (224, 224), (40, 2000), (2000, 30), (17, 23)]  # the thin ones fall back
    for seed in range(300):
        for height, width in shapes:
            torch.manual_seed(seed)
            expected = RandomResizedCrop.get_params(torch.empty(3, height, width), [0.2, 1.0], [3 / 4, 4 / 3])
            assert crop_box(height, width, torch.Generator().manual_seed(seed)) == expected, (
                seed,
                height,
                width,
            )


def test_the_crop_distribution_is_random_resized_crops():
    """Statistics of 4,000 draws against 4,000 independent ones of torchvision's RandomResizedCrop (its retries make
    the area average about 0.49 of the image at 500x375, not the 0.6 of a uniform draw in [0.2, 1])."""

    def statistics(boxes):
        area = np.array([h * w / (375 * 500) for _, _, h, w in boxes])
        ratio = np.log([w / h for _, _, h, w in boxes])
        top = np.array([t / (375 - h) for t, _, h, _ in boxes if h < 375])
        left = np.array([x / (500 - w) for _, x, _, w in boxes if w < 500])
        return (
            np.array([area.mean(), area.std(), ratio.mean(), ratio.std(), top.mean(), left.mean()]),
            area,
            ratio,
        )

    ours, area, ratio = statistics(
        [crop_box(375, 500, torch.Generator().manual_seed(s)) for s in range(4000)]
    )
    torch.manual_seed(12345)
    theirs, _, _ = statistics([RandomResizedCrop.get_params(torch.empty(3, 375, 500), [0.2, 1.0], [3 / 4, 4 / 3])
                               for _ in range(4000)])  # fmt: skip
    assert np.abs(ours - theirs).max() < 0.02, (ours, theirs)
    assert (
        area.min() >= 0.19
        and area.max() <= 1.0
        and np.exp(ratio).min() >= 0.74
        and np.exp(ratio).max() <= 1.34
    )


def make_files(root, count=6):
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        array = (rng.random((90 + 7 * i, 120, 3)) * 60 + np.linspace(0, 190, 120)[None, :, None]).astype(
            np.uint8
        )
        Image.fromarray(array).save(root / f"{i}.jpg", quality=92)
    return ImageFiles(root).files


def test_a_sample_is_the_pil_paths_box_flip_and_noise_with_pixels_within_a_bound(tmp_path):
    """Photograph crops (tests/helpers.make_jpegs: 100x120 JPEGs, so most 224-pixel samples are enlarged) through
    both paths: the same noise, and torch's antialiased bicubic against PIL's on the same box. Measured: at most 9
    levels of 255 on a pixel at a sharp edge, 0.03 levels on average over 60 ImageNet-sized JPEGs
    (benchmarks/data_path.py's files; README)."""
    from helpers import make_jpegs

    make_jpegs(tmp_path / "photos")
    files = [
        f for f in ImageFiles(tmp_path / "photos").files if f.suffix == ".jpg" and f.name != "broken.jpg"
    ]
    tensor_path = FileMaskedImages(files, 224, 196, seed=3)
    pil_path = MaskedImages([Image.open(f) for f in files], 224, 196, seed=3)
    for dataset in (tensor_path, pil_path):
        dataset.set_epoch(2)
    worst, means = 0, []
    for index in range(len(files)):
        (image, noise), (pil_image, pil_noise) = tensor_path[index], pil_path[index]
        assert image.dtype == torch.uint8 and image.shape == (3, 224, 224)
        assert torch.equal(noise, pil_noise)  # the same draws, in the same order
        difference = (image.int() - pil_image.int()).abs()
        worst, means = max(worst, difference.max().item()), [*means, difference.float().mean().item()]
    assert worst <= 12 and max(means) < 0.5 and sum(means) / len(means) < 0.15, (worst, means)


def test_each_sample_is_a_function_of_seed_epoch_and_index(tmp_path):
    dataset = FileMaskedImages(make_files(tmp_path / "jpegs"), 32, 4, seed=1)
    first = [dataset[i] for i in (4, 0, 2)]
    again = [dataset[i] for i in (2, 4, 0)]  # another order
    assert all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        for a, b in zip(first, [again[1], again[2], again[0]])
    )
    dataset.set_epoch(1)
    assert not torch.equal(dataset[4][1], first[0][1])
    generator = sample_generator(1, 1, 4)
    assert torch.equal(torch.Generator().manual_seed(sample_seed(1, 1, 4)).get_state(), generator.get_state())


def test_other_formats_and_broken_files_take_the_general_path(tmp_path):
    root = tmp_path / "mixed"
    root.mkdir()
    rgb = (np.random.default_rng(0).random((50, 60, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(root / "a.png")
    Image.fromarray(rgb).save(root / "b.bmp")
    Image.fromarray(rgb[..., 0]).save(root / "c.jpg")  # a grayscale JPEG
    Image.fromarray(rgb).convert("CMYK").save(root / "d.jpg")  # CMYK: PIL if libjpeg-turbo refuses it
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(root / "e.png")  # 16 bits: scaled to 8
    (root / "f.jpg").write_bytes((root / "c.jpg").read_bytes()[:120])  # truncated
    files = ImageFiles(root).files
    assert read_uint8(files[0]).shape == (3, 50, 60) and torch.equal(
        read_uint8(files[0]).permute(1, 2, 0), torch.from_numpy(rgb)
    )
    assert read_uint8(files[2]).shape == (3, 50, 60) and read_uint8(files[2], channels=1).shape == (1, 50, 60)
    assert read_uint8(files[4]).max() > 200  # 16-bit values scaled to 0..255, not clipped to white
    dataset = build_pretrain_dataset(str(root), 32, 4)
    assert isinstance(dataset, FileMaskedImages)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        samples = [dataset[i] for i in range(len(dataset))]
    assert [s is None for s in samples] == [False] * 5 + [True]
    assert any("skipping unreadable image #5" in str(w.message) for w in caught)
    assert all(s[0].shape == (3, 32, 32) for s in samples[:5])


def test_the_gpu_decode_path_draws_the_same_boxes(tmp_path):
    from mae.data.device_decode import EncodedMaskedImages

    files = make_files(tmp_path / "jpegs")
    encoded = EncodedMaskedImages(files, 16, seed=5)
    for index in range(len(files)):
        _, box, noise = encoded[index]
        generator = sample_generator(5, 0, index)
        height, width = read_uint8(files[index]).shape[-2:]
        assert tuple(box[:4].tolist()) == crop_box(height, width, generator)
        assert box[4].item() == int(torch.rand(1, generator=generator).item() < 0.5)
        assert torch.equal(noise, torch.rand(16, generator=generator))
        assert torch.equal(noise, FileMaskedImages(files, 32, 16, seed=5)[index][1])


def test_an_exif_rotated_jpeg_keeps_the_orientation_pil_and_the_official_pipeline_give_it(tmp_path):
    """TorchCodec applies EXIF orientation, PIL (ImageFolder) does not: such a file goes through PIL."""
    array = np.zeros((40, 60, 3), dtype=np.uint8)
    array[:, :30] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees
    Image.fromarray(array).save(tmp_path / "rotated.jpg", exif=exif.tobytes())
    Image.fromarray(array).save(tmp_path / "plain.jpg")
    for name in ("rotated.jpg", "plain.jpg"):
        image = read_uint8(tmp_path / name)
        assert image.shape == (3, 40, 60), name
        assert image[:, :, :25].float().mean() > 200 and image[:, :, 35:].float().mean() < 50, name
