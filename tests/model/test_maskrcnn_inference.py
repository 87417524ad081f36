"""MaskRCNN in inference mode on a tiny config: detect(), molding, weights, run_graph."""
from pathlib import Path

import h5py
import numpy as np
import pytest

from mrcnn.config import Config
from mrcnn.model.maskrcnn import MaskRCNN
from mrcnn.model.weights_io import read_classic_weight_index

SPEC = Path(__file__).resolve().parents[3] / "shared" / "spec" / "weights-coco-r101.txt"


class TinyConfig(Config):
    NAME = "tiny"
    IMAGES_PER_GPU = 2
    NUM_CLASSES = 4
    BACKBONE = "resnet50"
    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 128
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    POST_NMS_ROIS_INFERENCE = 64
    PRE_NMS_LIMIT = 500
    DETECTION_MAX_INSTANCES = 12
    DETECTION_MIN_CONFIDENCE = 0.0


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    # Seeded: with random weights the class logits can be nearly the same for every ROI, and an
    # unlucky draw makes background win all of one image's ROIs (no detections at all).
    import keras
    keras.utils.set_random_seed(0)
    return MaskRCNN(mode="inference", config=TinyConfig(),
                    model_dir=str(tmp_path_factory.mktemp("logs")))


def _images(rng, shapes):
    return [rng.integers(0, 255, size=s, dtype=np.uint8) for s in shapes]


def _check_result(result, image):
    h, w = image.shape[:2]
    n = result["rois"].shape[0]
    assert result["rois"].dtype == np.int32 and result["rois"].shape == (n, 4)
    assert result["class_ids"].shape == (n,) and result["scores"].shape == (n,)
    assert result["masks"].shape == (h, w, n) and result["masks"].dtype == bool
    if n:
        rois = result["rois"]
        assert (rois[:, 0] >= 0).all() and (rois[:, 1] >= 0).all()
        assert (rois[:, 2] <= h).all() and (rois[:, 3] <= w).all()
        assert (rois[:, 2] > rois[:, 0]).all() and (rois[:, 3] > rois[:, 1]).all()
        assert set(result["class_ids"].tolist()) <= {1, 2, 3}
        # Each pasted mask lies inside its (original-image) box.
        for i in range(n):
            y1, x1, y2, x2 = rois[i]
            outside = result["masks"][:, :, i].copy()
            outside[y1:y2, x1:x2] = False
            assert not outside.any()
    return n


def test_detect_batch_of_two_non_square_images(model):
    rng = np.random.default_rng(0)
    images = _images(rng, [(100, 150, 3), (130, 90, 3)])
    results = model.detect(images)
    assert len(results) == 2
    counts = [_check_result(r, im) for r, im in zip(results, images)]
    # Confidence 0 and random weights: detections exist (at most DETECTION_MAX_INSTANCES).
    assert all(0 < c <= TinyConfig.DETECTION_MAX_INSTANCES for c in counts)


def test_detect_same_image_alone_and_in_batch_agree(model):
    rng = np.random.default_rng(1)
    image, other = _images(rng, [(128, 96, 3), (128, 96, 3)])
    pair = model.detect([image, other])[0]
    # A list longer than BATCH_SIZE is run in batches; an odd tail is a batch of one.
    three = model.detect([other, other, image])
    np.testing.assert_array_equal(pair["class_ids"], three[2]["class_ids"])
    # oneDNN picks kernels by batch size: float32 sums differ in the last bits and a random
    # network amplifies that to ~3e-4 relative in the scores (measured); a real batch mix-up
    # would change them entirely.
    np.testing.assert_allclose(pair["scores"], three[2]["scores"], rtol=2e-3, atol=1e-4)
    assert np.abs(pair["rois"] - three[2]["rois"]).max() <= 1


def test_nothing_above_confidence_gives_empty_results(model):
    rng = np.random.default_rng(2)
    images = _images(rng, [(128, 128, 3), (64, 128, 3)])
    # Scores are softmax probabilities: none reaches 1.0 + epsilon.
    model.keras_model.get_layer("mrcnn_detection").min_confidence = 1.01
    try:
        model._predict_fn = None
        results = model.detect(images)
    finally:
        model.keras_model.get_layer("mrcnn_detection").min_confidence = 0.0
        model._predict_fn = None
    for r, image in zip(results, images):
        assert r["rois"].shape == (0, 4)
        assert r["masks"].shape == image.shape[:2] + (0,)


def test_mold_inputs_and_unmold_detections_map_back_to_original_pixels(model):
    image = np.zeros((64, 128, 3), dtype=np.uint8)
    molded, metas, windows = model.mold_inputs([image])
    assert molded.shape == (1, 128, 128, 3)
    np.testing.assert_array_equal(windows[0], [32, 0, 96, 128])  # scale 1, padded top/bottom
    # A detection covering the whole window maps to the whole original image.
    window_norm = np.array([32, 0, 96, 128]) / np.array([127, 127, 127, 127])
    window_norm[2:] = (np.array([96, 128]) - 1) / 127.0
    detections = np.zeros((12, 6), np.float32)
    detections[0] = [*window_norm, 2, 0.9]
    masks = np.ones((12, 28, 28), np.float32)
    boxes, class_ids, scores, full = model.unmold_detections(
        detections, masks, image.shape, molded[0].shape, windows[0])
    np.testing.assert_array_equal(boxes, [[0, 0, 64, 128]])
    assert class_ids.tolist() == [2] and full.shape == (64, 128, 1) and full.all()


def test_anchors_are_normalized_and_cached(model):
    anchors = model.get_anchors((128, 128, 3))
    assert anchors.dtype == np.float32 and anchors.shape[1] == 4
    # 3 ratios at each cell of P2..P6 for a 128 px image: 3 * (32^2 + 16^2 + 8^2 + 4^2 + 2^2).
    assert anchors.shape[0] == 3 * (32 ** 2 + 16 ** 2 + 8 ** 2 + 4 ** 2 + 2 ** 2)
    assert model.get_anchors((128, 128)) is anchors


def test_run_graph_returns_named_intermediates(model):
    rng = np.random.default_rng(3)
    images = _images(rng, [(128, 128, 3), (128, 128, 3)])
    km = model.keras_model
    out = model.run_graph(images, [("rpn_rois", km.get_layer("ROI").output),
                                   ("mrcnn_class", km.get_layer("mrcnn_class").output),
                                   ("fpn_p2", km.get_layer("fpn_p2").output)])
    assert list(out) == ["rpn_rois", "mrcnn_class", "fpn_p2"]
    assert out["rpn_rois"].shape == (2, 64, 4)
    assert out["mrcnn_class"].shape == (2, 64, 4)
    np.testing.assert_allclose(out["mrcnn_class"].sum(-1), 1.0, rtol=1e-4)
    assert out["fpn_p2"].shape == (2, 32, 32, 256)


def test_classic_h5_save_and_load_round_trip(model, tmp_path):
    path = tmp_path / "mask_rcnn_tiny_0001.h5"
    before = [w.numpy().copy() for w in model.keras_model.weights]
    model.save_weights(str(path))
    with h5py.File(path, "r") as f:
        assert "rpn_model" in f.attrs["layer_names"].astype(str).tolist()
    other = MaskRCNN(mode="inference", config=TinyConfig(), model_dir=str(tmp_path))
    other.load_weights(str(path), by_name=True)
    for a, b in zip(before, other.keras_model.weights):
        np.testing.assert_array_equal(a, b.numpy())
    # Loading a checkpoint name resumes its epoch counter (classic behaviour needs the
    # run-folder pattern; this flat file name keeps epoch 0).
    assert other.epoch == 0


def test_keras3_weights_file_round_trip(model, tmp_path):
    path = tmp_path / "tiny.weights.h5"
    model.save_weights(str(path))
    other = MaskRCNN(mode="inference", config=TinyConfig(), model_dir=str(tmp_path))
    other.load_weights(str(path))
    for a, b in zip(model.keras_model.weights, other.keras_model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_find_last_and_log_dir_from_checkpoint_name(model, tmp_path):
    other = MaskRCNN(mode="inference", config=TinyConfig(), model_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError):
        other.find_last()
    run = tmp_path / "tiny20250102T0304"
    run.mkdir()
    (tmp_path / "tiny20260101T0000").mkdir()  # newer run that crashed before a checkpoint
    for epoch in (1, 2):
        model.save_weights(str(run / f"mask_rcnn_tiny_{epoch:04d}.h5"))
    last = other.find_last()
    assert last == str(run / "mask_rcnn_tiny_0002.h5")
    other.load_weights(last, by_name=True)
    assert other.epoch == 2
    assert other.log_dir == str(run)


def test_get_imagenet_weights_offline_error_names_what_to_pass(model, tmp_path, monkeypatch):
    import mrcnn.model.pretrained as pretrained
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.delenv("MRCNN_IMAGENET_WEIGHTS", raising=False)

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(pretrained.urllib.request, "urlopen", offline)
    with pytest.raises(FileNotFoundError) as err:
        model.get_imagenet_weights()
    message = str(err.value)
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert "MRCNN_IMAGENET_WEIGHTS" in message
    local = tmp_path / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    local.write_bytes(b"")
    monkeypatch.setenv("MRCNN_IMAGENET_WEIGHTS", str(local))
    assert model.get_imagenet_weights() == str(local)


def test_inference_requires_inference_mode():
    with pytest.raises(ValueError, match="mode"):
        MaskRCNN(mode="predict", config=TinyConfig(), model_dir="/tmp")


class CocoConfig(Config):
    NAME = "coco"
    NUM_CLASSES = 81
    IMAGES_PER_GPU = 1


@pytest.mark.slow
@pytest.mark.skipif(not SPEC.exists(), reason=f"spec file {SPEC} missing (../shared/spec)")
def test_coco_config_model_matches_the_classic_weight_layout(tmp_path):
    """The default COCO config has exactly the weights of the classic mask_rcnn_coco.h5."""
    model = MaskRCNN(mode="inference", config=CocoConfig(), model_dir=str(tmp_path))
    assert model.keras_model.count_params() == 64_158_584
    path = tmp_path / "coco_layout.h5"
    model.save_weights(str(path))
    ours = [(g, w, "x".join(str(d) for d in s)) for g, w, s in read_classic_weight_index(path)]
    spec = [tuple(line.split()) for line in SPEC.read_text().splitlines() if line.strip()]
    assert sorted(ours) == sorted(spec)
    assert len(ours) == 690
