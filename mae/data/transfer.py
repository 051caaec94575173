"""The transfer datasets of the paper's Table 6 in the layouts they are distributed in, read as lists of
(image file, label) with the class names: iNaturalist 2017, 2018 and 2019 with COCO-style JSON annotation files,
and Places365 with its text file lists (iNaturalist 2021's train/ and val/ are class folders, which ImageFolder's
layout reads as they are). `mae.data.labelled.load_labelled` recognises a folder in one of
these layouts by its files, so `--data_path <folder>` works for fine-tuning and linear probing as for ImageNet.

- iNaturalist: `<root>/train<year>.json` and `<root>/val<year>.json`, each with "images" (id, file_name),
  "annotations" (image_id, category_id) and "categories" (id, name). The 2018 and 2019 files name their categories
  in an obfuscated form and the real names came later as `<root>/categories.json`: when that file is there, the
  names are read from it (its ids must be the training file's). `file_name` is relative to <root>: extract the
  image archive there (train_val_images/ for 2017, train_val2018/, train_val2019/). Labels are the categories in
  order of their ids, 0 to K-1.
- Places365-Standard: `<root>/places365_train_standard.txt` ("/a/airfield/00000001.jpg 0" per line),
  `<root>/places365_val.txt` ("Places365_val_00000001.jpg 165"), `<root>/categories_places365.txt`
  ("/a/airfield 0"), the images in `<root>/data_256/` and `<root>/val_256/` (the 256x256 archives), or
  `data_large/` and `val_large/` (the high-resolution ones).

Every problem with the files (a missing or malformed one, an image without a label, a label outside the
categories, an image folder that is not where the lists point) is a LayoutError naming the file and the line or
image.
"""

import json
from pathlib import Path

INATURALIST_YEARS = ("2017", "2018", "2019")
PLACES365 = {
    "train": "places365_train_standard.txt",
    "val": "places365_val.txt",
    "categories": "categories_places365.txt",
}
PLACES365_IMAGES = (("data_256", "val_256"), ("data_large", "val_large"))  # (train, val) folders, either size


class LayoutError(ValueError):
    """A transfer dataset's files are not as distributed; the message names the file and what is wrong."""


def find_layout(root):
    """ "inaturalist<year>" or "places365" if `root` holds that dataset's files, else None."""
    root = Path(root)
    found = [f"inaturalist{year}" for year in INATURALIST_YEARS
             if (root / f"train{year}.json").is_file() or (root / f"val{year}.json").is_file()]  # fmt: skip
    if any((root / name).is_file() for name in PLACES365.values()):
        found.append("places365")
    if len(found) > 1:
        raise LayoutError(
            f"{root} holds the files of {' and '.join(found)}: give each dataset its own folder"
        )
    return found[0] if found else None


def load(root, layout):
    """{split: (files, labels)} for "train" and "val", and the class names (label i is names[i])."""
    if layout == "places365":
        return load_places365(root)
    return load_inaturalist(root, layout.removeprefix("inaturalist"))


# --------------------------------------------------------------------------- iNaturalist


def _read_json(path):
    if not path.is_file():
        raise LayoutError(f"{path} is missing: the {path.parent} layout needs train and val annotation files")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise LayoutError(f"{path} is not a readable JSON file ({error})") from None


def _records(path, annotations, key, fields):
    """annotations[key], a list of dicts each with `fields`, or a LayoutError naming the first that is not."""
    records = annotations.get(key) if isinstance(annotations, dict) else None
    if not isinstance(records, list):
        raise LayoutError(f"{path} has no {key!r} list: not an iNaturalist annotation file")
    for number, record in enumerate(records):
        missing = [field for field in fields if not isinstance(record, dict) or field not in record]
        if missing:
            raise LayoutError(f"{path}: {key}[{number}] has no {', '.join(missing)}")
    return records


def _categories(root, year, annotations):
    """{category id: label}, and the class names, from the training file's categories, named by categories.json
    where it exists (2018 and 2019: the files' own names are obfuscated)."""
    path = root / f"train{year}.json"
    categories = _records(path, annotations, "categories", ("id",))
    if not categories:
        raise LayoutError(f"{path} lists no categories")
    wrong = [c["id"] for c in categories if not isinstance(c["id"], int) or isinstance(c["id"], bool)]
    if wrong:
        raise LayoutError(f"{path}: category ids are integers, got {wrong[0]!r}")
    ids = sorted({c["id"] for c in categories})
    names = {c["id"]: str(c.get("name", c["id"])) for c in categories}
    if (root / "categories.json").is_file():
        named = _read_json(root / "categories.json")
        named = _records(root / "categories.json", {"categories": named}, "categories", ("id", "name"))
        if sorted(c["id"] for c in named) != ids:
            raise LayoutError(f"{root / 'categories.json'} names other categories than {path.name} lists")
        names = {c["id"]: str(c["name"]) for c in named}
    class_names = [names[i] for i in ids]
    if len(set(class_names)) != len(class_names):  # not names to map folders by: the ids are
        class_names = [str(i) for i in ids]
    return {category: label for label, category in enumerate(ids)}, class_names


def _inaturalist_split(root, path, annotations, labels_of):
    images = _records(path, annotations, "images", ("id", "file_name"))
    category_of = {}
    for a in _records(path, annotations, "annotations", ("image_id", "category_id")):
        if category_of.setdefault(a["image_id"], a["category_id"]) != a["category_id"]:
            raise LayoutError(f"{path}: image {a['image_id']} is annotated with two categories, "
                              f"{category_of[a['image_id']]} and {a['category_id']}")  # fmt: skip
    files, labels = [], []
    for image in images:
        if image["id"] not in category_of:
            raise LayoutError(f"{path}: image {image['id']} ({image['file_name']}) has no annotation")
        category = category_of[image["id"]]
        if category not in labels_of:
            raise LayoutError(f"{path}: image {image['file_name']} has category {category}, which is not among "
                              f"the {len(labels_of)} categories")  # fmt: skip
        files.append(root / image["file_name"])
        labels.append(labels_of[category])
    if not files:
        raise LayoutError(f"{path} lists no images")
    if not files[0].is_file():
        raise LayoutError(f"{files[0]} is missing (the first image {path.name} lists): file_name is read relative to "
                          f"{root}, where the image archive is to be extracted")  # fmt: skip
    return files, labels


def load_inaturalist(root, year):
    root = Path(root)
    train = _read_json(root / f"train{year}.json")
    labels_of, class_names = _categories(root, year, train)
    splits = {"train": _inaturalist_split(root, root / f"train{year}.json", train, labels_of)}
    val_path = root / f"val{year}.json"
    splits["val"] = _inaturalist_split(root, val_path, _read_json(val_path), labels_of)
    return splits, class_names


# --------------------------------------------------------------------------- Places365


def _read_lines(path):
    """(line number, [fields]) of a file list, blank lines left out."""
    if not path.is_file():
        raise LayoutError(
            f"{path} is missing: Places365 needs {', '.join(PLACES365.values())} in {path.parent}"
        )
    lines = path.read_text(encoding="utf-8").splitlines()
    return [(n, line.split()) for n, line in enumerate(lines, 1) if line.strip()]


def _label(path, number, fields, count):
    if len(fields) != 2 or not fields[1].isdigit() or int(fields[1]) >= count:
        raise LayoutError(
            f"{path}:{number}: expected '<image> <label 0-{count - 1}>', got {' '.join(fields)!r}"
        )
    return int(fields[1])


def load_places365(root):
    root = Path(root)
    categories_path = root / PLACES365["categories"]
    categories = _read_lines(categories_path)
    names = [None] * len(categories)
    for number, fields in categories:
        names[_label(categories_path, number, fields, len(categories))] = fields[0].lstrip("/")
    if None in names:
        raise LayoutError(f"{categories_path}: labels 0 to {len(names) - 1} should each appear once")
    folders = next((pair for pair in PLACES365_IMAGES if (root / pair[0]).is_dir()), None)
    if folders is None:
        raise LayoutError(f"{root} has no image folder: extract the image archives there "
                          f"({' or '.join(f'{t}/ and {v}/' for t, v in PLACES365_IMAGES)})")  # fmt: skip
    splits = {}
    for split, folder in zip(("train", "val"), folders, strict=True):
        path = root / PLACES365[split]
        rows = _read_lines(path)
        if not rows:
            raise LayoutError(f"{path} lists no images")
        files = [root / folder / fields[0].lstrip("/") for _, fields in rows]
        labels = [_label(path, number, fields, len(names)) for number, fields in rows]
        if not files[0].is_file():
            raise LayoutError(f"{files[0]} is missing (the first image of {path.name}): the images are read from "
                              f"{root / folder}")  # fmt: skip
        splits[split] = files, labels
    return splits, names
