"""The classic calls of the inspection notebooks, written against the classic signatures.

compute_backbone_shapes(config, image_shape), model.anchors, detect_molded in molded-image
coordinates, ancestor / run_graph in both modes (with the proposal and detection layers'
internals), compile(learning_rate, momentum).
"""
import keras
import numpy as np
import pytest

import mrcnn.model as modellib
from mrcnn import utils
from mrcnn.config import Config
from samples.shapes.shapes import make_dataset


class InspectConfig(Config):
    NAME = "inspect"
    IMAGES_PER_GPU = 1
    NUM_CLASSES = 4
    BACKBONE = "resnet50"
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    TOP_DOWN_PYRAMID_SIZE = 32
    FPN_CLASSIF_FC_LAYERS_SIZE = 64
    TRAIN_BN = None
    PRE_NMS_LIMIT = 200
    POST_NMS_ROIS_TRAINING = 32
    POST_NMS_ROIS_INFERENCE = 24
    RPN_TRAIN_ANCHORS_PER_IMAGE = 32
    TRAIN_ROIS_PER_IMAGE = 16
    MAX_GT_INSTANCES = 6
    DETECTION_MAX_INSTANCES = 8
    DETECTION_MIN_CONFIDENCE = 0.0


@pytest.fixture(scope="module")
def dataset():
    return make_dataset(3, split="val", seed=5, height=128, width=128)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return modellib.MaskRCNN("inference", InspectConfig(), str(tmp_path_factory.mktemp("logs")))


@pytest.fixture(scope="module")
def training_model(tmp_path_factory):
    return modellib.MaskRCNN("training", InspectConfig(), str(tmp_path_factory.mktemp("logs")))


def test_compute_backbone_shapes_classic_signature():
    config = InspectConfig()
    shapes = modellib.compute_backbone_shapes(config, config.IMAGE_SHAPE)
    assert shapes.tolist() == [[16, 16], [8, 8], [4, 4], [2, 2], [1, 1]]

    class Custom(InspectConfig):
        BACKBONE = staticmethod(lambda image, stage5=True, train_bn=True: None)
        COMPUTE_BACKBONE_SHAPE = staticmethod(lambda shape: [[shape[0] // 2, shape[1] // 2]])

    assert modellib.compute_backbone_shapes(Custom(), (10, 12)).tolist() == [[5, 6]]


def test_anchors_attribute_holds_pixel_anchors_of_last_get_anchors(model):
    normalized = model.get_anchors((64, 64, 3))
    assert model.anchors.shape == normalized.shape
    np.testing.assert_allclose(utils.norm_boxes(model.anchors, (64, 64)), normalized, atol=1e-6)
    # The classic notebook: build_rpn_targets(image.shape, model.anchors, ..., config).
    match, bbox = modellib.build_rpn_targets((64, 64, 3), model.anchors, np.array([1]),
                                             np.array([[10, 10, 40, 40]]), model.config)
    assert match.shape == (model.anchors.shape[0],) and np.sum(match == 1) >= 1
    assert bbox.shape == (model.config.RPN_TRAIN_ANCHORS_PER_IMAGE, 4)


def test_detect_molded_returns_molded_image_coordinates(model, dataset):
    # The 128 px images mold to 64 px (scale 0.5): detect() answers in 128 px coordinates,
    # detect_molded() in the 64 px frame of load_image_gt's ground truth.
    image = dataset.load_image(0)
    molded, meta, _, gt_bbox, gt_mask = modellib.load_image_gt(dataset, model.config, 0)
    assert gt_mask.shape[:2] == molded.shape[:2] == (64, 64)
    original = model.detect([image])[0]
    result = model.detect_molded(molded[np.newaxis], meta[np.newaxis])[0]
    assert result["rois"].shape[0] > 0
    assert result["masks"].shape[:2] == (64, 64)
    assert original["masks"].shape[:2] == (128, 128)
    assert np.all(result["rois"] <= 64)
    # Same detections, coordinates halved (up to the rounding of the two frames).
    n = min(len(result["rois"]), len(original["rois"]))
    np.testing.assert_allclose(result["rois"][:n] * 2, original["rois"][:n], atol=3)
    np.testing.assert_allclose(result["scores"][:n], original["scores"][:n], atol=1e-3)


def test_ancestor_finds_proposal_internals_and_run_graph_returns_them(model, dataset):
    km = model.keras_model
    pillar = km.get_layer("ROI").output
    assert model.ancestor(pillar, "mrcnn_detection/scores:0") is None  # not upstream of ROI
    assert model.ancestor(pillar, "no_such_layer/x:0") is None
    with pytest.raises(ValueError, match="ROI/pre_nms_anchors"):
        model.ancestor(pillar, "ROI/some_tf1_op:0")
    nms = model.ancestor(pillar, "ROI/rpn_non_max_suppression/NonMaxSuppressionV3:0")
    assert nms is model.ancestor(pillar, "ROI/post_nms_anchor_ix")  # alias, one node
    image = dataset.load_image(1)
    rpn = model.run_graph([image], [
        ("rpn_class", km.get_layer("rpn_class").output),
        ("pre_nms_anchors", model.ancestor(pillar, "ROI/pre_nms_anchors:0")),
        ("refined_anchors", model.ancestor(pillar, "ROI/refined_anchors:0")),
        ("refined_anchors_clipped", model.ancestor(pillar, "ROI/refined_anchors_clipped:0")),
        ("post_nms_anchor_ix", nms),
        ("proposals", pillar),
    ])
    assert list(rpn) == ["rpn_class", "pre_nms_anchors", "refined_anchors",
                         "refined_anchors_clipped", "post_nms_anchor_ix", "proposals"]
    k = model.config.PRE_NMS_LIMIT
    assert rpn["pre_nms_anchors"].shape == (1, k, 4)
    # Pre-NMS anchors are the best-scored anchors, best first.
    anchors = model.get_anchors((64, 64))
    order = np.argsort(-rpn["rpn_class"][0, :, 1], kind="stable")[:k]
    np.testing.assert_allclose(np.sort(rpn["pre_nms_anchors"][0], axis=0),
                               np.sort(anchors[order], axis=0), atol=1e-6)
    clipped = rpn["refined_anchors_clipped"][0]
    assert clipped.min() >= 0 and clipped.max() <= 1
    np.testing.assert_allclose(np.clip(rpn["refined_anchors"][0], 0, 1), clipped, atol=1e-6)
    ix = rpn["post_nms_anchor_ix"][0]
    valid = ix[ix >= 0]
    assert valid.size > 0 and np.all(ix[valid.size:] == -1)
    np.testing.assert_allclose(rpn["proposals"][0, :valid.size], clipped[valid], atol=1e-6)


def test_detection_layer_internals_agree_with_detections(model, dataset):
    km = model.keras_model
    detections_tensor = km.get_layer("mrcnn_detection").output
    out = model.run_graph([dataset.load_image(2)], [
        ("probs", km.get_layer("mrcnn_class").output),
        ("class_ids", model.ancestor(detections_tensor, "mrcnn_detection/class_ids")),
        ("scores", model.ancestor(detections_tensor, "mrcnn_detection/scores")),
        ("refined_rois", model.ancestor(detections_tensor, "mrcnn_detection/refined_rois")),
        ("keep", model.ancestor(detections_tensor, "mrcnn_detection/keep")),
        ("detections", detections_tensor),
    ])
    np.testing.assert_array_equal(out["class_ids"][0], np.argmax(out["probs"][0], axis=1))
    np.testing.assert_allclose(out["scores"][0], np.max(out["probs"][0], axis=1), rtol=1e-6)
    detections = out["detections"][0]
    n = int(np.sum(detections[:, 4] > 0))
    assert 0 < n <= int(np.sum(out["keep"][0]))
    # Every detection is one of the kept refined ROIs with its class and score (an untrained
    # model can refine two ROIs to the same box, so the box alone does not identify the ROI).
    kept = np.where(out["keep"][0])[0]
    for row in detections[:n]:
        distance = np.abs(out["refined_rois"][0, kept] - row[:4]).sum(axis=1)
        same_box = kept[distance < 1e-5]
        assert same_box.size, (row, distance.min())
        assert any(out["class_ids"][0, j] == row[4] and abs(out["scores"][0, j] - row[5]) < 1e-5
                   for j in same_box), (row, out["class_ids"][0, same_box],
                                        out["scores"][0, same_box])


def test_run_graph_with_image_metas_does_not_normalize_twice(model, dataset):
    image = dataset.load_image(0)
    molded, metas, _ = model.mold_inputs([image])
    rois = [("rois", model.keras_model.get_layer("ROI").output)]
    from_images = model.run_graph([image], rois)["rois"]
    from_molded = model.run_graph(molded, rois, image_metas=metas)["rois"]
    np.testing.assert_allclose(from_images, from_molded, atol=1e-6)
    with pytest.raises(ValueError, match="None"):
        model.run_graph([image], [("missing", None)])


def test_run_graph_and_ancestor_in_training_mode(training_model, model, dataset):
    km = training_model.keras_model
    pillar = km.get_layer("ROI").output
    image = dataset.load_image(0)
    out = training_model.run_graph([image], [
        ("rpn_class", km.get_layer("rpn_class").output),
        ("pre_nms_anchors", training_model.ancestor(pillar, "ROI/pre_nms_anchors:0")),
        ("proposals", pillar),
    ])
    assert out["proposals"].shape == (1, training_model.config.POST_NMS_ROIS_TRAINING, 4)
    assert out["pre_nms_anchors"].shape == (1, training_model.config.PRE_NMS_LIMIT, 4)
    assert out["rpn_class"].shape[:2] == (1, training_model.get_anchors((64, 64)).shape[0])
    with pytest.raises(ValueError, match="ground truth"):
        training_model.run_graph([image], [("mrcnn_class",
                                            km.get_layer("mrcnn_class").output)])


def test_compile_classic_signature(training_model, model):
    training_model.compile(0.002, 0.8)
    optimizer = training_model.keras_model.optimizer
    assert isinstance(optimizer, keras.optimizers.SGD)
    assert float(optimizer.learning_rate) == pytest.approx(0.002)
    assert optimizer.momentum == pytest.approx(0.8)
    # The step clips each gradient to GRADIENT_CLIP_NORM; an optimizer clipnorm would clip
    # it a second time.
    assert optimizer.clipnorm is None
    assert training_model.keras_model.gradient_clip_norm == training_model.config.GRADIENT_CLIP_NORM
    with pytest.raises(RuntimeError, match="training"):
        model.compile(0.001, 0.9)


def test_visualize_on_real_model_output(model, dataset, capsys):
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    from mrcnn import visualize
    table = visualize.display_weight_stats(model)
    names = [row[0] for row in table[1:]]
    assert len(names) > 100 and any("res2a_branch2a" in n for n in names)
    assert table[0] == ["WEIGHT NAME", "SHAPE", "MIN", "MAX", "STD"]

    image, _, gt_class_ids, gt_boxes, gt_masks = modellib.load_image_gt(dataset, model.config, 0)
    r = model.detect_molded(image[np.newaxis], modellib.compose_image_meta(
        0, image.shape, image.shape, (0, 0, 64, 64), 1.0, np.ones(4))[np.newaxis])[0]
    figures = [visualize.display_instances(image, r["rois"], r["masks"], r["class_ids"],
                                           dataset.class_names, r["scores"])]
    ap, precisions, recalls, overlaps = utils.compute_ap(
        gt_boxes, gt_class_ids, gt_masks, r["rois"], r["class_ids"], r["scores"], r["masks"])
    figures.append(visualize.plot_precision_recall(ap, precisions, recalls))
    figures.append(visualize.plot_overlaps(gt_class_ids, r["class_ids"], r["scores"], overlaps,
                                           dataset.class_names))
    # Feature maps: negative floats must not wrap around as in a uint8 cast.
    p2 = model.run_graph([dataset.load_image(0)],
                         [("fpn_p2", model.keras_model.get_layer("fpn_p2").output)])["fpn_p2"]
    fig = visualize.display_images(np.transpose(p2[0, :, :, :4], [2, 0, 1]), cols=4)
    shown = fig.axes[0].images[0].get_array()
    np.testing.assert_allclose(np.asarray(shown), p2[0, :, :, 0], rtol=1e-6)
    figures.append(fig)

    config = model.config
    (batch_images, _, _, _, _, _, _, _, rois), (class_ids, deltas, masks) = next(
        modellib.data_generator(dataset, config, random_rois=200, batch_size=1,
                                detection_targets=True, seed=1))
    specific = deltas[0, np.arange(rois.shape[1]), class_ids[0, :, 0]]
    refined = utils.apply_box_deltas(rois[0].astype(np.float32),
                                     specific * config.BBOX_STD_DEV)
    mask_specific = masks[0, np.arange(masks.shape[1]), :, :, class_ids[0, :, 0]]
    figures.append(visualize.draw_rois(modellib.unmold_image(batch_images[0], config), rois[0],
                                       refined, mask_specific, class_ids[0, :, 0],
                                       dataset.class_names))
    assert "Positive ROIs" in capsys.readouterr().out
    assert all(isinstance(f, Figure) for f in figures)
    plt.close("all")
