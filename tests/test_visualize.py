"""Tests of mrcnn.visualize: colours, mask tinting, instance figures and saved PNGs."""
import matplotlib
import numpy as np
import pytest
from matplotlib import patches
from matplotlib.figure import Figure

from mrcnn import visualize


def _two_instances():
    image = np.full((64, 80, 3), 100, dtype=np.uint8)
    masks = np.zeros((64, 80, 2), dtype=bool)
    masks[5:20, 10:30, 0] = True
    masks[30:50, 40:70, 1] = True
    boxes = np.array([[5, 10, 20, 30], [30, 40, 50, 70]], dtype=np.int32)
    class_ids = np.array([1, 2], dtype=np.int32)
    return image, boxes, masks, class_ids


CLASS_NAMES = ["BG", "square", "circle", "triangle"]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    matplotlib.pyplot.close("all")


def test_backend_is_headless_or_user_choice():
    # The test machine has no display: the module must not have picked an interactive backend.
    assert not matplotlib.pyplot.isinteractive()
    assert matplotlib.get_backend().lower() in ("agg", "module://matplotlib_inline.backend_inline")


def test_apply_mask_known_values_and_input_untouched():
    image = np.full((4, 5, 3), 100, dtype=np.uint8)
    before = image.copy()
    mask = np.zeros((4, 5), dtype=bool)
    mask[1:3, 2:4] = True
    out = visualize.apply_mask(image, mask, (1.0, 0.0, 0.6), alpha=0.2)
    np.testing.assert_array_equal(image, before)
    assert out is not image and out.dtype == np.uint8 and out.shape == image.shape
    # 100 * 0.8 + 0.2 * 255 * c: R 131, G 80, B 110.6 -> 111
    np.testing.assert_array_equal(out[1, 2], [131, 80, 111])
    np.testing.assert_array_equal(out[~mask], before[~mask])
    assert (out[mask] == [131, 80, 111]).all()


def test_apply_mask_float_image_and_rgba_colour():
    image = np.full((2, 2, 3), 10.0, dtype=np.float32)
    mask = np.array([[True, False], [False, False]])
    out = visualize.apply_mask(image, mask, (0.0, 1.0, 0.0, 0.8))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0], [5.0, 132.5, 5.0])
    np.testing.assert_allclose(out[1, 1], [10.0, 10.0, 10.0])


def test_apply_mask_rejects_wrong_mask_shape():
    with pytest.raises(ValueError, match="mask shape"):
        visualize.apply_mask(np.zeros((4, 4, 3)), np.zeros((4, 5), bool), (1, 0, 0))


def test_random_colors_count_range_and_seed():
    colors = visualize.random_colors(7, seed=3)
    assert len(colors) == 7
    assert all(len(c) == 3 and all(0.0 <= v <= 1.0 for v in c) for c in colors)
    assert len(set(colors)) == 7
    assert colors == visualize.random_colors(7, seed=3)
    # The same HSV palette whatever the shuffle: hues i / N, saturation 1, value 1 (bright).
    assert sorted(colors) == sorted(visualize.random_colors(7, seed=4))
    assert max(max(c) for c in colors) == 1.0
    dim = visualize.random_colors(7, bright=False, seed=3)
    assert max(max(c) for c in dim) == pytest.approx(0.7)
    assert visualize.random_colors(0) == []


def test_display_instances_two_instances():
    image, boxes, masks, class_ids = _two_instances()
    scores = np.array([0.9, 0.75])
    fig = visualize.display_instances(image, boxes, masks, class_ids, CLASS_NAMES, scores,
                                      title="t", figsize=(4, 4))
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    rectangles = [p for p in ax.patches if isinstance(p, patches.Rectangle)]
    polygons = [p for p in ax.patches if isinstance(p, patches.Polygon)]
    assert len(rectangles) == 2
    assert len(polygons) == 2  # one outline per rectangular mask
    assert sorted(t.get_text() for t in ax.texts) == ["circle 0.750", "square 0.900"]
    # Box geometry in (x, y, width, height) terms.
    first = rectangles[0]
    assert (first.get_x(), first.get_y(), first.get_width(), first.get_height()) == (10, 5, 20, 15)
    # The shown image is tinted inside the masks only.
    shown = ax.images[0].get_array()
    assert shown.shape == (64, 80, 3)
    assert (np.asarray(shown)[0, 0] == 100).all()
    assert not (np.asarray(shown)[10, 15] == 100).all()


def test_display_instances_options_and_given_axes():
    image, boxes, masks, class_ids = _two_instances()
    fig = Figure()
    ax = fig.add_subplot(1, 1, 1)
    out = visualize.display_instances(image, boxes, masks, class_ids, CLASS_NAMES, ax=ax,
                                      show_bbox=False, show_mask=False,
                                      captions=["a", "b"], colors=[(1, 0, 0), (0, 0, 1)])
    assert out is fig
    assert not [p for p in ax.patches if isinstance(p, patches.Rectangle)]
    assert [t.get_text() for t in ax.texts] == ["a", "b"]
    np.testing.assert_array_equal(np.asarray(ax.images[0].get_array()), image)


def test_display_instances_zero_instances(capsys):
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    fig = visualize.display_instances(image, np.zeros((0, 4)), np.zeros((32, 32, 0), bool),
                                      np.zeros((0,), np.int32), CLASS_NAMES, figsize=(2, 2))
    assert isinstance(fig, Figure)
    assert "No instances to display" in capsys.readouterr().out
    assert not fig.axes[0].patches and not fig.axes[0].texts


def test_display_instances_mismatched_counts():
    image, boxes, masks, class_ids = _two_instances()
    with pytest.raises(ValueError, match="class_ids"):
        visualize.display_instances(image, boxes, masks, class_ids[:1], CLASS_NAMES)


def test_save_comparison_figure_writes_png(tmp_path):
    import cv2

    image, boxes, masks, class_ids = _two_instances()
    path = tmp_path / "cmp.png"
    before = len(matplotlib.pyplot.get_fignums())
    out = visualize.save_comparison_figure(
        str(path), image, gt=(boxes, masks, class_ids),
        pred=(boxes[:1], masks[:, :, :1], class_ids[:1], np.array([0.8])),
        class_names=CLASS_NAMES, title="demo", figsize=(6, 3), dpi=50)
    assert out == str(path)
    assert path.stat().st_size > 0
    png = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert png is not None and png.shape[:2] == (150, 300)
    assert png[..., :3].std() > 0  # something was drawn
    assert len(matplotlib.pyplot.get_fignums()) == before  # no pyplot figure left open


def test_save_comparison_figure_without_predictions(tmp_path, capsys):
    from skimage import io

    image, boxes, masks, class_ids = _two_instances()
    path = tmp_path / "empty.png"
    visualize.save_comparison_figure(
        path, image, gt=(boxes, masks, class_ids),
        pred=(np.zeros((0, 4)), np.zeros((64, 80, 0), bool), np.zeros(0, np.int32), np.zeros(0)),
        class_names=CLASS_NAMES, figsize=(4, 2), dpi=50)
    assert io.imread(path).shape[:2] == (100, 200)
    assert "No instances" not in capsys.readouterr().out


def test_save_instances_figure(tmp_path):
    from skimage import io

    image, boxes, masks, class_ids = _two_instances()
    path = tmp_path / "inst.png"
    visualize.save_instances_figure(path, image, boxes, masks, class_ids, CLASS_NAMES,
                                    scores=[0.5, 0.6], figsize=(3, 3), dpi=40)
    assert io.imread(path).shape[:2] == (120, 120)


def test_draw_box_in_place():
    image = np.zeros((10, 10, 3), dtype=np.uint8)
    out = visualize.draw_box(image, (2, 3, 7, 8), (255, 0, 0))
    assert out is image
    assert (image[2, 3:8, 0] == 255).all() and (image[2:7, 3, 0] == 255).all()
    assert image[5, 5, 0] == 0 and image[..., 1].max() == 0


def test_display_differences_captions():
    image, boxes, masks, class_ids = _two_instances()
    # Predictions in ascending score order: captions must follow each prediction, not the rank.
    fig = visualize.display_differences(
        image, boxes, class_ids, masks, boxes[::-1], class_ids[::-1], np.array([0.6, 0.9]),
        masks[..., ::-1], CLASS_NAMES)
    texts = sorted(t.get_text() for t in fig.axes[0].texts)
    assert texts == ["", "", "0.60 / 1.00", "0.90 / 1.00"]


def test_plots_and_table(capsys):
    fig = visualize.plot_precision_recall(0.5, np.array([0, 1, 0.5, 0]), np.array([0, .5, 1, 1]))
    assert "AP@50 = 0.500" in fig.axes[0].get_title()
    overlaps = np.array([[0.9, 0.1], [0.2, 0.6]])
    fig = visualize.plot_overlaps(np.array([1, 2]), np.array([1, 3]), np.array([.9, .8]),
                                  overlaps, CLASS_NAMES)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "0.900\nmatch" in texts and "0.600\nwrong" in texts
    visualize.display_table([["A", "B"], [1, 22]])
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["A", "B"] and out[1].split() == ["1", "22"]


def test_draw_boxes_and_top_masks():
    image, boxes, masks, class_ids = _two_instances()
    fig = visualize.draw_boxes(image, boxes=boxes, refined_boxes=boxes + 1, masks=masks,
                               captions=["x", "y"], visibilities=[0, 2])
    ax = fig.axes[0]
    assert len([p for p in ax.patches if isinstance(p, patches.Rectangle)]) == 3
    assert len(ax.lines) == 1
    fig = visualize.display_top_masks(image, masks, class_ids, CLASS_NAMES, limit=2)
    assert [a.get_title() for a in fig.axes] == ["H x W=64x80", "circle", "square"]


def test_display_weight_stats_flags_dead_and_overflow(capsys):
    class Var:
        def __init__(self, path):
            self.path = path
            self.name = path.rsplit("/", 1)[-1]

    class Layer:
        def __init__(self, values):
            self.weights = [Var(name) for name in values]
            self._values = list(values.values())

        def get_weights(self):
            return self._values

    class KerasModel:
        layers = [Layer({"conv1/kernel": np.full((3, 3), 0.5, np.float32),
                         "conv1/bias": np.zeros(3, np.float32)}),
                  Layer({"fc/kernel": np.array([[-2000.0, 1.0]], np.float32)})]

    class Model:
        keras_model = KerasModel()

    table = visualize.display_weight_stats(Model())
    assert table[0] == ["WEIGHT NAME", "SHAPE", "MIN", "MAX", "STD"]
    names = [row[0] for row in table[1:]]
    assert names == ["conv1/kernel *** dead?", "conv1/bias", "fc/kernel *** Overflow?"]
    assert table[1][1] == "(3, 3)" and float(table[3][2]) == -2000.0
    assert "conv1/bias" in capsys.readouterr().out
