"""The transfer datasets in their distributed layouts (mae.data.transfer): iNaturalist's JSON annotation files and
Places365's file lists, read by load_labelled as ImageNet's folders are, and fine-tuned by mae.finetune."""

import json

import numpy as np
import pytest
from PIL import Image

from mae.data.labelled import load_labelled
from mae.data.transfer import LayoutError, find_layout


def save_image(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((40, 48, 3), value, dtype=np.uint8)).save(path)


def make_inaturalist(root, year="2017", names=True):
    """Three categories with ids 7, 3, 12 (labels by id: 3 -> 0, 7 -> 1, 12 -> 2), 6 training and 3 validation
    images under train_val_images/<supercategory>/<name>/, as the 2017 archive extracts."""
    categories = [{"id": 7, "name": "Cyanocitta stelleri", "supercategory": "Aves"},
                  {"id": 3, "name": "Rubus ursinus", "supercategory": "Plantae"},
                  {"id": 12, "name": "Danaus plexippus", "supercategory": "Insecta"}]  # fmt: skip
    if not names:
        categories = [{"id": c["id"]} for c in categories]
    for split, per_class, first in (("train", 2, 0), ("val", 1, 100)):
        images, annotations = [], []
        for k, category in enumerate([7, 3, 12] * per_class):
            image_id = first + k
            file_name = f"train_val_images/group/{category}/{image_id}.jpg"
            save_image(root / file_name, 10 * category)
            images.append({"id": image_id, "file_name": file_name, "width": 48, "height": 40})
            annotations.append({"id": 1000 + image_id, "image_id": image_id, "category_id": category})
        data = {"images": images, "annotations": annotations, "categories": categories}
        (root / f"{split}{year}.json").write_text(json.dumps(data))
    return root


def make_places365(root, folders=("data_256", "val_256")):
    """Places365-Standard's lists for 3 of its categories, with 4 training and 3 validation images."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "categories_places365.txt").write_text(
        "/b/bakery/shop 2\n/a/airfield 0\n/a/alley 1\n"
    )  # not in order
    train = [("/a/airfield/00000001.jpg", 0), ("/a/alley/00000001.jpg", 1), ("/b/bakery/shop/00000001.jpg", 2),
             ("/a/airfield/00000002.jpg", 0)]  # fmt: skip
    val = [
        ("Places365_val_00000001.jpg", 2),
        ("Places365_val_00000002.jpg", 0),
        ("Places365_val_00000003.jpg", 1),
    ]
    for folder, rows, name in ((folders[0], train, "places365_train_standard.txt"), (folders[1], val, "places365_val.txt")):  # fmt: skip
        for path, label in rows:
            save_image(root / folder / path.lstrip("/"), 40 * label)
        (root / name).write_text("".join(f"{path} {label}\n" for path, label in rows))
    return root


def test_inaturalist_labels_follow_the_category_ids_and_the_names_are_kept(tmp_path):
    root = make_inaturalist(tmp_path / "inat2017")
    assert find_layout(root) == "inaturalist2017"
    data = load_labelled(root)
    assert data.num_classes == 3 and data.in_chans == 3
    assert data.class_names == ("Rubus ursinus", "Cyanocitta stelleri", "Danaus plexippus")  # ids 3, 7, 12
    assert data.train_labels == [1, 0, 2, 1, 0, 2] and data.val_labels == [1, 0, 2]
    assert (
        len(data.train_images) == 6 and data.val_images.files[0] == root / "train_val_images/group/7/100.jpg"
    )
    assert np.asarray(data.val_images[1])[0, 0, 0] == 30  # category 3's image, read as every job reads it


def test_inaturalist_2018_names_come_from_categories_json_not_the_obfuscated_ones(tmp_path):
    root = make_inaturalist(tmp_path / "inat2018", year="2018")
    edit_json(
        root / "train2018.json",
        lambda d: d.update(categories=[{"id": i, "name": f"x{i}"} for i in (12, 3, 7)]),
    )
    assert load_labelled(root).class_names == ("x3", "x7", "x12")  # the files' own (obfuscated) names
    (root / "categories.json").write_text(json.dumps([{"id": 3, "name": "c"}, {"id": 7, "name": "a"},
                                                      {"id": 12, "name": "b"}]))  # fmt: skip
    assert load_labelled(root).class_names == ("c", "a", "b")
    assert load_labelled(make_inaturalist(tmp_path / "nameless", year="2019", names=False)).class_names == (
        "3",
        "7",
        "12",
    )
    (root / "categories.json").write_text(json.dumps([{"id": 3, "name": "c"}, {"id": 8, "name": "a"}]))
    with pytest.raises(LayoutError, match="categories.json names other categories than train2018.json lists"):
        load_labelled(root)


def test_places365_lists_folders_and_category_names(tmp_path):
    root = make_places365(tmp_path / "places365")
    assert find_layout(root) == "places365"
    data = load_labelled(root)
    assert data.class_names == ("a/airfield", "a/alley", "b/bakery/shop") and data.num_classes == 3
    assert data.train_labels == [0, 1, 2, 0] and data.val_labels == [2, 0, 1]
    assert data.train_images.files[2] == root / "data_256" / "b/bakery/shop/00000001.jpg"
    assert data.val_images.files[0] == root / "val_256" / "Places365_val_00000001.jpg"
    assert np.asarray(data.val_images[0])[0, 0, 0] == 80
    large = load_labelled(make_places365(tmp_path / "large", ("data_large", "val_large")))
    assert large.val_images.files[0].parent.name == "val_large"


def edit_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: (r / "val2017.json").unlink(), r"val2017.json is missing"),
        (lambda r: (r / "val2017.json").write_text("{"), r"val2017.json is not a readable JSON file"),
        (lambda r: edit_json(r / "train2017.json", lambda d: d.pop("annotations")), r"has no 'annotations' list"),
        (lambda r: edit_json(r / "val2017.json", lambda d: d["annotations"].pop(1)),
         r"val2017.json: image 101 \(train_val_images/group/3/101.jpg\) has no annotation"),
        (lambda r: edit_json(r / "val2017.json", lambda d: d["annotations"][0].update(category_id=99)),
         r"image train_val_images/group/7/100.jpg has category 99, which is not among the 3 categories"),
        (lambda r: edit_json(r / "train2017.json", lambda d: d.update(categories=[])), r"lists no categories"),
        (lambda r: edit_json(r / "val2017.json", lambda d: d["images"][2].pop("file_name")),
         r"val2017.json: images\[2\] has no file_name"),
        (lambda r: edit_json(r / "train2017.json", lambda d: d["categories"][0].update(id="7")),
         r"category ids are integers, got '7'"),
        (lambda r: edit_json(r / "val2017.json", lambda d: d["annotations"].append({"image_id": 100, "category_id": 3})),
         r"image 100 is annotated with two categories, 7 and 3"),
        (lambda r: (r / "train_val_images/group/7/0.jpg").unlink(),
         r"train_val_images/group/7/0.jpg is missing .*read relative to"),
    ],
)  # fmt: skip
def test_inaturalist_problems_name_the_file_and_the_image(tmp_path, damage, message):
    root = make_inaturalist(tmp_path / "inat")
    damage(root)
    with pytest.raises(LayoutError, match=message):
        load_labelled(root)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: (r / "places365_val.txt").unlink(), r"places365_val.txt is missing: Places365 needs"),
        (lambda r: (r / "places365_val.txt").write_text("Places365_val_00000001.jpg\n"),
         r"places365_val.txt:1: expected '<image> <label 0-2>', got 'Places365_val_00000001.jpg'"),
        (lambda r: (r / "places365_train_standard.txt").write_text("/a/airfield/00000001.jpg 3\n"),
         r"places365_train_standard.txt:1: expected '<image> <label 0-2>', got '/a/airfield/00000001.jpg 3'"),
        (lambda r: (r / "categories_places365.txt").write_text("/a/airfield 0\n/a/alley 0\n/b/bakery/shop 2\n"),
         r"labels 0 to 2 should each appear once"),
        (lambda r: (r / "data_256").rename(r / "train_256"), r"has no image folder: extract the image archives"),
        (lambda r: (r / "val_256/Places365_val_00000001.jpg").unlink(),
         r"Places365_val_00000001.jpg is missing \(the first image of places365_val.txt\)"),
    ],
)  # fmt: skip
def test_places365_problems_name_the_file_and_the_line(tmp_path, damage, message):
    root = make_places365(tmp_path / "places")
    damage(root)
    with pytest.raises(LayoutError, match=message):
        load_labelled(root)


def test_two_datasets_in_one_folder_are_refused(tmp_path):
    root = make_places365(make_inaturalist(tmp_path / "both"))
    with pytest.raises(LayoutError, match="holds the files of inaturalist2017 and places365"):
        load_labelled(root)


def test_a_folder_in_no_layout_says_which_layouts_are_read(tmp_path):
    (tmp_path / "data").mkdir()
    with pytest.raises(FileNotFoundError, match=r"the ImageNet layout\), or the files of iNaturalist"):
        load_labelled(tmp_path / "data")


@pytest.mark.slow
def test_finetune_trains_and_evaluates_on_an_inaturalist_folder(tmp_path):
    from mae import finetune

    root = make_inaturalist(tmp_path / "inat")
    stats = finetune.main(["--model", "vit_mini_patch8", "--input_size", "32", "--data_path", str(root),
                           "--epochs", "1", "--warmup_epochs", "0", "--batch_size", "3", "--device", "cpu",
                           "--num_workers", "0", "--output_dir", str(tmp_path / "out")])  # fmt: skip
    assert 0.0 <= stats["acc1"] <= 100.0
    import torch

    saved = torch.load(tmp_path / "out" / "checkpoint-last.pth", weights_only=True, map_location="cpu")
    assert list(saved["class_names"]) == ["Rubus ursinus", "Cyanocitta stelleri", "Danaus plexippus"]
    assert saved["model"]["head.weight"].shape[0] == 3
