"""Tests of the shapes sample's configs, dataset generation, images and masks (no model)."""
import numpy as np
import pytest

from mrcnn.ops.masks import extract_bboxes
from samples.shapes import shapes as shapes_sample
from samples.shapes.shapes import ShapesDataset, make_dataset

SIZE = 128


@pytest.fixture(scope="module")
def dataset():
    return make_dataset(12, "train", seed=7, height=SIZE, width=SIZE)


def _hand_built(shapes, bg_color=(0, 0, 0), height=SIZE, width=SIZE):
    ds = ShapesDataset()
    ds.load_shapes(0, height, width)  # registers the classes only
    ds.add_image("shapes", image_id=0, path=None, height=height, width=width,
                 bg_color=bg_color, shapes=shapes)
    ds.prepare()
    return ds


def test_configs():
    classic = shapes_sample.ShapesConfig()
    assert (classic.NAME, classic.NUM_CLASSES, classic.BACKBONE) == ("shapes", 4, "resnet101")
    assert classic.BATCH_SIZE == 8 and list(classic.IMAGE_SHAPE) == [128, 128, 3]
    assert tuple(classic.RPN_ANCHOR_SCALES) == (8, 16, 32, 64, 128)
    assert (classic.TRAIN_ROIS_PER_IMAGE, classic.STEPS_PER_EPOCH,
            classic.VALIDATION_STEPS) == (32, 100, 5)
    cpu = shapes_sample.make_config("cpu", "training")
    assert cpu.BACKBONE == "resnet50" and cpu.TRAIN_BN is None and cpu.LEARNING_RATE == 0.01
    assert shapes_sample.make_config("cpu", "inference").BATCH_SIZE == 1
    with pytest.raises(ValueError, match="kind"):
        shapes_sample.make_config("gpu")


def test_classes(dataset):
    assert dataset.class_names == ["BG", "square", "circle", "triangle"]
    assert dataset.num_images == 12


def test_deterministic_with_seed(dataset):
    again = make_dataset(12, "train", seed=7, height=SIZE, width=SIZE)
    assert [i["shapes"] for i in again.image_info] == [i["shapes"] for i in dataset.image_info]
    assert [i["bg_color"] for i in again.image_info] == [i["bg_color"] for i in dataset.image_info]
    np.testing.assert_array_equal(again.load_image(3), dataset.load_image(3))
    other = make_dataset(12, "val", seed=7, height=SIZE, width=SIZE)
    assert [i["shapes"] for i in other.image_info] != [i["shapes"] for i in dataset.image_info]


def test_generated_specs_in_classic_ranges(dataset):
    for info in dataset.image_info:
        assert 1 <= len(info["shapes"]) <= 4
        for name, color, (x, y, s) in info["shapes"]:
            assert name in ("square", "circle", "triangle")
            assert all(0 <= c <= 255 for c in color)
            assert 20 <= y <= SIZE - 21 and 20 <= x <= SIZE - 21 and 20 <= s <= SIZE // 4


def test_load_image_shape_dtype_and_background(dataset):
    image = dataset.load_image(0)
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
    masks, _ = dataset.load_mask(0)
    background = ~masks.any(axis=-1)
    assert (image[background] == dataset.image_info[0]["bg_color"]).all()


def test_masks_one_per_shape_nonempty_and_disjoint(dataset):
    for image_id in dataset.image_ids:
        masks, class_ids = dataset.load_mask(image_id)
        shapes = dataset.image_info[image_id]["shapes"]
        assert masks.dtype == np.bool_ and masks.shape == (SIZE, SIZE, len(shapes))
        assert class_ids.dtype == np.int32
        expected = [dataset.class_names.index(name) for name, _, _ in shapes]
        assert class_ids.tolist() == expected and all(1 <= c <= 3 for c in expected)
        assert masks.any(axis=(0, 1)).all()
        assert masks.sum(axis=-1).max() <= 1  # occlusion leaves every pixel to one instance


def test_mask_pixels_have_their_shape_colour(dataset):
    for image_id in dataset.image_ids:
        image = dataset.load_image(image_id)
        masks, _ = dataset.load_mask(image_id)
        for i, (_, color, _) in enumerate(dataset.image_info[image_id]["shapes"]):
            assert (image[masks[:, :, i]] == color).all()


def test_bboxes_inside_image(dataset):
    for image_id in dataset.image_ids:
        masks, _ = dataset.load_mask(image_id)
        boxes = extract_bboxes(masks)
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= SIZE).all()
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()


def test_square_mask_is_exactly_the_drawn_square():
    ds = _hand_built([("square", (200, 10, 10), (60, 50, 20))], bg_color=(5, 5, 5))
    masks, class_ids = ds.load_mask(0)
    assert class_ids.tolist() == [1]
    # cv2 fills the corners inclusively: rows 30..70, columns 40..80.
    expected = np.zeros((SIZE, SIZE), dtype=bool)
    expected[30:71, 40:81] = True
    np.testing.assert_array_equal(masks[:, :, 0], expected)
    np.testing.assert_array_equal(extract_bboxes(masks), [[30, 40, 71, 81]])
    image = ds.load_image(0)
    assert (image[expected] == (200, 10, 10)).all() and (image[~expected] == 5).all()


def test_later_shape_occludes_earlier():
    square = ("square", (255, 0, 0), (50, 50, 20))
    circle = ("circle", (0, 0, 255), (70, 50, 20))
    ds = _hand_built([square, circle])
    masks, class_ids = ds.load_mask(0)
    assert class_ids.tolist() == [1, 2]
    circle_alone = ShapesDataset.draw_shape(np.zeros((SIZE, SIZE), np.uint8), "circle",
                                            (70, 50, 20), 1).astype(bool)
    square_alone = np.zeros((SIZE, SIZE), dtype=bool)
    square_alone[30:71, 30:71] = True
    np.testing.assert_array_equal(masks[:, :, 1], circle_alone)
    np.testing.assert_array_equal(masks[:, :, 0], square_alone & ~circle_alone)
    image = ds.load_image(0)
    assert (image[circle_alone] == (0, 0, 255)).all()


def test_fully_hidden_shape_is_dropped_at_generation():
    # A small square, then a big circle over it. Box IoU 1600 / 6400 = 0.25 < 0.3, so NMS keeps
    # both, but the square is fully covered and must not become an empty mask.
    script = [("square", (1, 2, 3), (60, 60, 20)), ("circle", (4, 5, 6), (60, 60, 40))]

    class Scripted(ShapesDataset):
        def random_shape(self, height, width, rng=None):
            return script.pop(0)

    class StubRng:
        def integers(self, low, high=None, size=None):
            return np.array([7, 8, 9]) if size == 3 else 2  # bg colour, then 2 shapes

    bg_color, shapes = Scripted().random_image(256, 256, rng=StubRng())
    assert bg_color == (7, 8, 9)
    assert shapes == [("circle", (4, 5, 6), (60, 60, 40))]


def test_image_reference_and_errors(dataset):
    assert dataset.image_reference(1) == dataset.image_info[1]["shapes"]
    with pytest.raises(ValueError, match="image_id"):
        dataset.load_image(99)
    with pytest.raises(ValueError, match="at least"):
        ShapesDataset().load_shapes(1, 64, 64, seed=0)
    with pytest.raises(ValueError, match="split"):
        make_dataset(1, "test")


def test_command_line_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        shapes_sample.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--logs", "--weights", "--epochs", "--steps", "--train-images",
                 "--val-images", "--seed", "--limit", "--output", "--cpu-config",
                 "--classic-config"):
        assert flag in out
    args = shapes_sample.build_parser().parse_args(["demo", "--classic-config", "--seed", "3"])
    assert (args.command, args.config, args.seed, args.weights) == ("demo", "classic", 3, None)
    assert shapes_sample.build_parser().parse_args(["train"]).config == "cpu"
