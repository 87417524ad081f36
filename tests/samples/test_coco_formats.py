"""The coco sample's ``--format via|labelme|masks`` and ``mrcnn.data.formats``, generated files."""
import numpy as np
import pytest

from mrcnn.data.formats import load_annotated_dataset, split_dataset
from mrcnn.data.via import ViaDataset
from samples.coco import coco as coco_sample
from tests.samples.format_folders import H, W, write_format_folders


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return write_format_folders(tmp_path_factory.mktemp("formats"))


def _args(*argv):
    return coco_sample.build_parser().parse_args(list(argv) + ["--model", "none"])


def test_cli_loads_each_format_and_splits(folders):
    train, val, coco = coco_sample.load_datasets(
        _args("train", "--format", "labelme", "--dataset", str(folders / "labelme")), "train")
    assert coco is None and train.num_images == 4 and val.num_images == 1
    assert train.class_names == val.class_names == ["BG", "a", "b"]
    assert val.image_info[0]["id"] == "im4.json"
    assert list(val.load_mask(0)[1]) == [1, 2]

    train, val, _ = coco_sample.load_datasets(
        _args("train", "--format", "masks", "--dataset", str(folders / "masks"),
              "--val-dataset", str(folders / "masks")), "train")
    assert train.class_names == ["BG", "cell", "dirt"] and val.num_images == 4
    masks, class_ids = train.load_mask(2)
    assert masks.shape == (H, W, 2) and list(class_ids) == [1, 2]

    _, dataset, _ = coco_sample.load_datasets(
        _args("evaluate", "--format", "via", "--dataset",
              str(folders / "via" / "via_region_data.json"), "--class-attribute", "kind",
              "--default-class", "blob"), "evaluate")
    assert dataset.class_names == ["BG", "blob", "box"]
    masks, class_ids = dataset.load_mask(0)
    assert list(class_ids) == [2, 1] and masks[..., 0].sum() == 80


def test_evaluate_runs_on_a_non_coco_dataset(folders, capsys):
    dataset = load_annotated_dataset("labelme", folders / "labelme")

    class GroundTruthDetector:  # the evaluation is under test, not the network
        config = coco_sample.make_config(coco_sample.CocoInferenceConfig, IMAGES_PER_GPU=2)

        def detect(self, images, verbose=0):
            out = []
            for _ in images:
                image_id = self.next
                self.next += 1
                masks, class_ids = dataset.load_mask(image_id)
                from mrcnn.ops.masks import extract_bboxes
                out.append({"rois": extract_bboxes(masks), "class_ids": class_ids,
                            "scores": np.ones(len(class_ids), np.float32), "masks": masks})
            return out

    detector = GroundTruthDetector()
    detector.next = 0
    metrics = coco_sample.evaluate(detector, dataset, verbose=0)
    assert metrics["segm"]["AP"] == pytest.approx(1.0)
    assert metrics["bbox"]["AP"] == pytest.approx(1.0)


def test_format_errors_are_named(folders, capsys):
    with pytest.raises(ValueError, match="is not one of"):
        load_annotated_dataset("yolo", folders)
    with pytest.raises(ValueError, match=r"class\(es\) \['blob'\] are not in class_names"):
        ViaDataset().load_via(folders / "via" / "via_region_data.json", class_attribute="kind",
                              default_class="blob", class_names=["box"])
    with pytest.raises(ValueError, match="region 1: no region attribute 'kind'"):
        ViaDataset().load_via(folders / "via" / "via_region_data.json", class_attribute="kind",
                              default_class=None)
    with pytest.raises(SystemExit) as info:
        coco_sample.main(["train", "--format", "labelme", "--dataset",
                          str(folders / "nowhere"), "--model", "none"])
    assert info.value.code == 2
    assert "LabelMe folder not found" in capsys.readouterr().err
    train, val = split_dataset(load_annotated_dataset("masks", folders / "masks"), 0.5)
    assert [i["id"] for i in train.image_info] == ["id0", "id1"]
    assert [i["id"] for i in val.image_info] == ["id2", "id3"]
