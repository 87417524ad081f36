"""Reliability catalogue, group "COCO / VIA / nucleus files": malformed annotation files and data
folders give an error naming the file and the annotation / entry / image. No model is built."""
import copy
import json

import numpy as np
import pytest
from PIL import Image

from mrcnn.data.coco import CocoDataset, CocoFormatError
from samples.balloon.balloon import read_via_annotations
from samples.nucleus.nucleus import NucleusDataset

SIZE = 16


def _coco():
    square = [2, 2, 10, 2, 10, 10, 2, 10]
    return {
        "images": [{"id": 40, "file_name": "a.png", "width": SIZE, "height": SIZE}],
        "categories": [{"id": 1, "name": "square"}],
        "annotations": [{"id": 7, "image_id": 40, "category_id": 1, "iscrowd": 0,
                         "bbox": [2, 2, 8, 8], "area": 64, "segmentation": [square]}],
    }


def _ann(data):
    return data["annotations"][0]


def _set(path_keys, value):
    def edit(data):
        target = data
        for key in path_keys[:-1]:
            target = target[key]
        target[path_keys[-1]] = value
        return data
    return edit


def _delete(*path_keys):
    def edit(data):
        target = data
        for key in path_keys[:-1]:
            target = target[key]
        del target[path_keys[-1]]
        return data
    return edit


A = ("annotations", 0)
COCO_BAD = [
    # (case, edit of the valid dict, text in the message)
    ("iscrowd-string-0", _set(A + ("iscrowd",), "0"), "'iscrowd' must be 0 or 1, got '0'"),
    ("iscrowd-string-1", _set(A + ("iscrowd",), "1"), "'iscrowd' must be 0 or 1"),
    ("iscrowd-2", _set(A + ("iscrowd",), 2), "'iscrowd' must be 0 or 1, got 2"),
    ("iscrowd-none", _set(A + ("iscrowd",), None), "'iscrowd' must be 0 or 1"),
    ("polygon-point-pairs", _set(A + ("segmentation",), [[[2, 2], [10, 2], [10, 10], [2, 10]]]),
     "point pairs"),
    ("polygon-strings", _set(A + ("segmentation",), [["2", "2", "10", "2", "10", "10"]]),
     "flat list of numbers"),
    ("polygon-odd-length", _set(A + ("segmentation",), [[2, 2, 10, 2, 10]]), "even number"),
    ("polygon-not-list", _set(A + ("segmentation",), [5]), "flat list"),
    ("segmentation-string", _set(A + ("segmentation",), "abc"), "list of polygons or an RLE"),
    ("rle-counts-sum", _set(A + ("segmentation",), {"size": [SIZE, SIZE], "counts": [10, 20]}),
     "add up to 30 pixels but its size [16, 16] has 256"),
    ("rle-counts-negative",
     _set(A + ("segmentation",), {"size": [SIZE, SIZE], "counts": [300, -44]}), "non-negative"),
    ("rle-counts-fraction",
     _set(A + ("segmentation",), {"size": [SIZE, SIZE], "counts": [100.5, 155.5]}),
     "non-negative integers"),
    ("rle-no-size", _set(A + ("segmentation",), {"counts": [256]}), "'size'"),
    ("rle-wrong-size", _set(A + ("segmentation",), {"size": [8, 8], "counts": [64]}),
     "differs from image 40's size"),
    ("missing-category-id", _delete(*A, "category_id"), "'category_id'"),
    ("dangling-image-id", _set(A + ("image_id",), 99), "image_id 99"),
    ("dangling-category-id", _set(A + ("category_id",), 5), "category_id 5"),
    ("duplicate-image-id", lambda d: (d["images"].append(dict(d["images"][0])), d)[1],
     "appears twice"),
    ("duplicate-category-id", lambda d: (d["categories"].append({"id": 1, "name": "x"}), d)[1],
     "appears twice"),
    ("image-without-file-name", _delete("images", 0, "file_name"), "'file_name'"),
    ("missing-annotations-key", _delete("annotations"), "missing top-level key"),
    ("images-not-list", _set(("images",), {"id": 40}), "'images' must be a list"),
]


@pytest.mark.parametrize("case,edit,text", COCO_BAD, ids=[c[0] for c in COCO_BAD])
def test_malformed_coco_json_names_file_and_annotation(tmp_path, case, edit, text):
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(edit(copy.deepcopy(_coco()))))
    with pytest.raises(CocoFormatError) as err:
        CocoDataset().load_coco(str(path), str(tmp_path))
    assert str(path) in str(err.value) and text in str(err.value)
    if case.startswith(("iscrowd", "polygon-point", "rle-counts", "polygon-str")):
        assert "annotation id 7" in str(err.value)


@pytest.mark.parametrize("content,text", [
    ("{not json", "not valid JSON"),
    ("[]", "expected a dict"),
], ids=["invalid-json", "top-level-list"])
def test_unreadable_coco_json_names_the_file(tmp_path, content, text):
    path = tmp_path / "instances.json"
    path.write_text(content)
    with pytest.raises(CocoFormatError) as err:
        CocoDataset().load_coco(str(path), str(tmp_path))
    assert str(path) in str(err.value)


def test_missing_coco_json_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        CocoDataset().load_coco(str(tmp_path / "nope.json"), str(tmp_path))


@pytest.mark.parametrize("iscrowd", [0, 1, True, False], ids=str)
def test_valid_iscrowd_values_are_read_as_numbers(tmp_path, iscrowd):
    data = _coco()
    _ann(data)["iscrowd"] = iscrowd
    Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(tmp_path / "a.png")
    dataset = CocoDataset()
    dataset.load_coco(data, str(tmp_path))
    dataset.prepare()
    _, class_ids = dataset.load_mask(0)
    assert class_ids.tolist() == ([-1] if iscrowd else [1])


def test_uncompressed_rle_that_adds_up_decodes(tmp_path):
    data = _coco()
    _ann(data)["segmentation"] = {"size": [SIZE, SIZE], "counts": [34, 4, 12, 4, 202]}
    Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(tmp_path / "a.png")
    dataset = CocoDataset()
    dataset.load_coco(data, str(tmp_path))
    dataset.prepare()
    masks, _ = dataset.load_mask(0)
    assert masks.sum() == 8


# ------------------------------------------------------------------------------- VIA (balloon)
def _via_entry(**region):
    shape = {"name": "polygon", "all_points_x": [1, 8, 8], "all_points_y": [1, 1, 8]}
    shape.update(region)
    return {"a.jpg123": {"filename": "a.jpg", "size": 123,
                         "regions": [{"shape_attributes": shape, "region_attributes": {}}]}}


VIA_BAD = [
    ("invalid-json", "{", "not valid JSON"),
    ("top-level-list", "[]", "expected a JSON object"),
    ("entry-without-regions", json.dumps({"k": {"filename": "a.jpg"}}), "'filename' and 'regions'"),
    ("regions-string", json.dumps({"k": {"filename": "a.jpg", "regions": "x"}}),
     "'regions' must be a list"),
    ("region-without-shape", json.dumps({"k": {"filename": "a.jpg", "regions": [{}]}}),
     "missing 'shape_attributes'"),
    ("x-y-length-mismatch", json.dumps(_via_entry(all_points_y=[1, 1])), "3 points"),
    ("unsupported-shape", json.dumps({"k": {"filename": "a.jpg", "regions": [
        {"shape_attributes": {"name": "spline", "cx": 1}}]}}), "unsupported region shape"),
    ("rect-without-height", json.dumps({"k": {"filename": "a.jpg", "regions": [
        {"shape_attributes": {"name": "rect", "x": 1, "y": 1, "width": 3}}]}}), "needs the keys"),
    ("string-coordinates", json.dumps(_via_entry(all_points_x=["1", "8", "8"])),
     "coordinates must be numbers"),
]


@pytest.mark.parametrize("case,content,text", VIA_BAD, ids=[v[0] for v in VIA_BAD])
def test_malformed_via_json_names_file_and_entry(tmp_path, case, content, text):
    path = tmp_path / "via_region_data.json"
    path.write_text(content)
    with pytest.raises(ValueError) as err:
        read_via_annotations(path)
    assert str(path) in str(err.value) and text in str(err.value)


def test_missing_via_json_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="via_region_data.json"):
        read_via_annotations(tmp_path / "via_region_data.json")


# ----------------------------------------------------------------------------- nucleus folders
def _nucleus(tmp_path, image_id="n1", mask_shape=(8, 8), mask_bytes=None, images=True):
    folder = tmp_path / "stage1_train" / image_id
    if images:
        (folder / "images").mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "images" / f"{image_id}.png")
    else:
        folder.mkdir(parents=True)
    (folder / "masks").mkdir()
    mask_path = folder / "masks" / "m1.png"
    if mask_bytes is not None:
        mask_path.write_bytes(mask_bytes)
    else:
        mask = np.zeros(mask_shape, np.uint8)
        mask[2:5, 2:5] = 255
        Image.fromarray(mask).save(mask_path)
    return tmp_path


NUCLEUS_BAD = [
    ("mask-of-another-size", dict(mask_shape=(8, 9)), ValueError, "m1.png"),
    ("corrupt-mask-file", dict(mask_bytes=b"\x89PNG garbage"), ValueError, "m1.png"),
    ("no-images-subfolder", dict(images=False), FileNotFoundError, "images"),
]


@pytest.mark.parametrize("case,kwargs,error,text", NUCLEUS_BAD, ids=[n[0] for n in NUCLEUS_BAD])
def test_broken_nucleus_folder_names_the_file(tmp_path, case, kwargs, error, text):
    root = _nucleus(tmp_path, **kwargs)
    dataset = NucleusDataset()
    with pytest.raises(error) as err:
        dataset.load_nucleus(str(root), "stage1_train")
        dataset.prepare()
        dataset.load_mask(0)
    assert text in str(err.value)


def test_missing_nucleus_folder_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        NucleusDataset().load_nucleus(str(tmp_path / "nowhere"), "stage1_train")
