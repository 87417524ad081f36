"""LabelMe json and mask-folder datasets on generated files: masks, classes and named errors."""
import base64
import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from mrcnn.data.labelme import LabelMeDataset, LabelMeFormatError, read_labelme_file
from mrcnn.data.mask_folder import MaskFolderDataset, MaskFolderError

H, W = 40, 60


def _png_bytes(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _picture():
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (H, W, 3), dtype=np.uint8)


@pytest.fixture
def labelme_dir(tmp_path):
    picture = _picture()
    Image.fromarray(picture).save(tmp_path / "a.png")
    shapes = [
        {"label": "cat", "points": [[10, 5], [20, 5], [20, 15], [10, 15]], "group_id": None,
         "shape_type": "polygon", "flags": {}},
        {"label": "dog", "points": [[30, 20], [40, 30]], "shape_type": "rectangle"},
        {"label": "cat", "points": [[50, 10], [50, 14]], "shape_type": "circle"},
        {"label": "cat", "points": [[5, 30]], "shape_type": "point"},
        # two parts of one object: same label and group_id
        {"label": "dog", "points": [[0, 0], [4, 0], [4, 4], [0, 4]], "group_id": 7},
        {"label": "dog", "points": [[0, 35], [4, 35], [4, 39], [0, 39]], "group_id": 7},
    ]
    with open(tmp_path / "a.json", "w") as f:
        json.dump({"version": "5.2.1", "shapes": shapes, "imagePath": "a.png", "imageData": None,
                   "imageHeight": H, "imageWidth": W}, f)
    sub = tmp_path / "more"
    sub.mkdir()
    embedded = base64.b64encode(_png_bytes(picture[::-1].copy())).decode("ascii")
    with open(sub / "b.json", "w") as f:
        json.dump({"shapes": [{"label": "dog", "points": [[1, 1], [9, 1], [9, 9]],
                               "shape_type": "polygon"}],
                   "imagePath": "missing.png", "imageData": embedded}, f)
    return tmp_path, picture


def test_labelme_shapes_classes_groups_and_embedded_images(labelme_dir):
    root, picture = labelme_dir
    dataset = LabelMeDataset()
    dataset.load_labelme(root)
    dataset.prepare()
    assert dataset.class_names == ["BG", "cat", "dog"]
    assert [info["id"] for info in dataset.image_info] == ["a.json", os.path.join("more", "b.json")]
    np.testing.assert_array_equal(dataset.load_image(0), picture)
    np.testing.assert_array_equal(dataset.load_image(1), picture[::-1])  # imageData wins
    masks, class_ids = dataset.load_mask(0)
    assert masks.shape == (H, W, 4) and list(class_ids) == [1, 2, 1, 2]
    # polygon (10,5)-(20,15): pixel centres strictly inside -> rows 5..14 / 6..14, not 16
    assert masks[10, 15, 0] and not masks[16, 15, 0] and not masks[10, 21, 0]
    # rectangle corners (30,20)-(40,30) cover pixels x 30..39, y 20..29 exactly
    expected = np.zeros((H, W), bool)
    expected[20:30, 30:40] = True
    np.testing.assert_array_equal(masks[..., 1], expected)
    # circle of radius 4 around (50, 10)
    assert masks[10, 50, 2] and masks[10, 53, 2] and not masks[10, 55, 2]
    # grouped parts: one instance with both squares
    assert masks[2, 2, 3] and masks[37, 2, 3] and masks[..., 3].sum() < 60
    masks_b, ids_b = dataset.load_mask(1)
    assert masks_b.shape == (H, W, 1) and list(ids_b) == [2]


def test_labelme_class_names_and_errors(labelme_dir, tmp_path_factory):
    root, _ = labelme_dir
    with pytest.raises(LabelMeFormatError, match=r"a\.json'.*label 'cat' is not one of"):
        LabelMeDataset().load_labelme(root, class_names=["dog"])
    ordered = LabelMeDataset()
    ordered.load_labelme([root / "a.json"], class_names=["dog", "cat", "bird"])
    ordered.prepare()
    assert list(ordered.load_mask(0)[1]) == [2, 1, 2, 1]

    bad = tmp_path_factory.mktemp("bad")
    cases = {
        "notjson.json": ("{", "not valid JSON"),
        "noshapes.json": ({"imagePath": "x.png"}, "'shapes' list"),
        "noimage.json": ({"shapes": []}, "neither 'imageData' nor 'imagePath'"),
        "kind.json": ({"imagePath": "x.png", "shapes": [{"label": "a", "points": [[0, 0]] * 3,
                                                          "shape_type": "mask"}]},
                      r"shape 0: unsupported shape_type 'mask'"),
        "points.json": ({"imagePath": "x.png", "shapes": [{"label": "a", "points": [[0, 0], [1]],
                                                            "shape_type": "polygon"}]},
                        r"shape 0: 'points' must be a list"),
        "few.json": ({"imagePath": "x.png", "shapes": [{"label": "a", "points": [[0, 0], [1, 1]],
                                                         "shape_type": "polygon"}]},
                     "needs at least 3 points"),
        "label.json": ({"imagePath": "x.png", "shapes": [{"label": "", "points": [[0, 0]] * 3}]},
                       "'label' must be a non-empty string"),
    }
    for name, (content, message) in cases.items():
        path = bad / name
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        with pytest.raises(LabelMeFormatError, match=message) as info:
            read_labelme_file(path)
        assert name in str(info.value)
    missing = tmp_path_factory.mktemp("missing")
    (missing / "c.json").write_text(json.dumps({"imagePath": "nope.png", "shapes": []}))
    with pytest.raises(FileNotFoundError, match=r"c\.json'.*nope\.png"):
        LabelMeDataset().load_labelme(missing)
    with pytest.raises(FileNotFoundError, match="LabelMe folder not found"):
        LabelMeDataset().load_labelme(missing / "nowhere")


def _square(y, x, size=8):
    mask = np.zeros((H, W), np.uint8)
    mask[y:y + size, x:x + size] = 255
    return mask


@pytest.fixture
def mask_folders(tmp_path):
    for image_id, layout in (("img1", "flat"), ("img2", "classes")):
        (tmp_path / image_id / "images").mkdir(parents=True)
        Image.fromarray(_picture()).save(tmp_path / image_id / "images" / f"{image_id}.png")
        masks = tmp_path / image_id / "masks"
        masks.mkdir()
        if layout == "flat":
            Image.fromarray(_square(2, 2)).save(masks / "m1.png")
            Image.fromarray(_square(20, 30)).save(masks / "m2.png")
            Image.fromarray(np.zeros((H, W), np.uint8)).save(masks / "empty.png")
        else:
            for name, (y, x) in (("cell", (5, 5)), ("debris", (25, 40))):
                (masks / name).mkdir()
                Image.fromarray(_square(y, x)).save(masks / name / "0.png")
    return tmp_path


def test_mask_folders_default_class_class_folders_and_class_map(mask_folders):
    dataset = MaskFolderDataset()
    dataset.load_mask_folders(mask_folders, default_class="cell",
                              class_map={"img1/m2.png": "debris"})
    dataset.prepare()
    assert dataset.class_names == ["BG", "cell", "debris"]
    masks, class_ids = dataset.load_mask(0)
    assert masks.shape == (H, W, 2) and list(class_ids) == [1, 2]  # the empty mask is skipped
    np.testing.assert_array_equal(masks[..., 0], _square(2, 2) > 0)
    masks2, class_ids2 = dataset.load_mask(1)
    assert list(class_ids2) == [1, 2] and masks2[25, 40, 1] and not masks2[25, 40, 0]


def test_mask_folder_errors(mask_folders):
    with pytest.raises(MaskFolderError, match=r"image 'img1': mask .*' has no class"):
        MaskFolderDataset().load_mask_folders(mask_folders, default_class=None)
    with pytest.raises(MaskFolderError, match=r"\['debris'\] are not in class_names"):
        MaskFolderDataset().load_mask_folders(mask_folders, class_names=["object", "cell"])
    Image.fromarray(np.zeros((H + 1, W), np.uint8)).save(mask_folders / "img1/masks/big.png")
    with pytest.raises(MaskFolderError, match=r"image 'img1': mask .*big\.png' is 60x41"):
        MaskFolderDataset().load_mask_folders(mask_folders)
    os.remove(mask_folders / "img1/masks/big.png")
    with pytest.raises(MaskFolderError, match=r"image_ids \['img9'\]"):
        MaskFolderDataset().load_mask_folders(mask_folders, image_ids=["img9"])
    os.rename(mask_folders / "img2/masks", mask_folders / "img2/other")
    with pytest.raises(FileNotFoundError, match=r"image 'img2'.*masks"):
        MaskFolderDataset().load_mask_folders(mask_folders)


@pytest.fixture
def label_images(tmp_path):
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    for stem in ("p", "q"):
        Image.fromarray(_picture()).save(images / f"{stem}.jpg")
    label = np.zeros((H, W), np.uint16)
    label[0:10, 0:10] = 1
    label[20:30, 20:30] = 300  # 16-bit ids
    Image.fromarray(label).save(labels / "p.png")
    Image.fromarray(np.zeros((H, W), np.uint8)).save(labels / "q.png")
    return images, labels


def test_label_images_with_class_table(label_images, tmp_path):
    images, labels = label_images
    table = tmp_path / "classes.json"
    table.write_text(json.dumps({"p": {"300": "car"}}))
    dataset = MaskFolderDataset()
    dataset.load_label_images(images, labels, class_table=table, default_class="person")
    dataset.prepare()
    assert dataset.class_names == ["BG", "car", "person"]
    masks, class_ids = dataset.load_mask(0)
    assert masks.shape == (H, W, 2) and list(class_ids) == [2, 1]
    assert masks[5, 5, 0] and masks[25, 25, 1] and masks.sum() == 200
    empty, no_ids = dataset.load_mask(1)
    assert empty.shape == (H, W, 0) and no_ids.shape == (0,)

    strict = MaskFolderDataset()
    strict.load_label_images(images, labels, class_table={"p": {"300": "car"}},
                             default_class=None)
    strict.prepare()
    with pytest.raises(MaskFolderError, match=r"image 'p': instance 1 .*no class_table entry"):
        strict.load_mask(0)
    with pytest.raises(MaskFolderError, match=r"image\(s\) \['zz'\]"):
        MaskFolderDataset().load_label_images(images, labels, class_table={"zz": {}})
    os.remove(labels / "q.png")
    with pytest.raises(FileNotFoundError, match=r"image 'q': label image .*q\.png"):
        MaskFolderDataset().load_label_images(images, labels)
