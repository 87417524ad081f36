"""``--format`` in the nucleus and balloon samples' command lines (the coco sample's is in
test_coco_formats.py): each format loads through the same reader, classes follow the data."""
import pytest

from samples.balloon import balloon
from samples.nucleus import nucleus
from tests.samples.format_folders import H, W, write_format_folders


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return write_format_folders(tmp_path_factory.mktemp("sample_formats"))


def test_nucleus_reads_labelme_and_masks_with_their_classes(folders):
    parser = nucleus.build_parser()
    args = parser.parse_args(["train", "--format", "labelme", "--dataset",
                              str(folders / "labelme"), "--val-fraction", "0.4"])
    train, val = nucleus.load_datasets(args, "train")
    assert (train.num_images, val.num_images) == (3, 2)
    assert train.class_names == val.class_names == ["BG", "a", "b"]
    config = nucleus.make_config("cpu", "training", train_images=3, val_images=2,
                                 num_classes=train.num_classes)
    assert config.NUM_CLASSES == 3 and config.IMAGE_META_SIZE == 12 + 3
    assert config.STEPS_PER_EPOCH == 1  # 3 images // batch of 2

    args = parser.parse_args(["evaluate", "--format", "masks", "--dataset",
                              str(folders / "masks")])
    none, dataset = nucleus.load_datasets(args, "evaluate")
    assert none is None and dataset.num_images == 4
    masks, class_ids = dataset.load_mask(1)
    assert masks.shape == (H, W, 2) and list(class_ids) == [1, 2]
    assert nucleus.make_config("cpu", "inference").NUM_CLASSES == 2  # the nucleus default


def test_nucleus_native_layout_is_the_default(tmp_path):
    args = nucleus.build_parser().parse_args(["train", "--dataset", str(tmp_path / "nowhere")])
    assert args.format == "dsb"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        nucleus.load_datasets(args, "train")
    args = nucleus.build_parser().parse_args(["evaluate", "--format", "labelme", "--dataset",
                                              str(tmp_path / "nowhere")])
    with pytest.raises(FileNotFoundError, match="LabelMe folder not found"):
        nucleus.load_datasets(args, "evaluate")


def test_balloon_trains_on_other_formats_with_their_classes(folders, capsys):
    parser = balloon.build_parser()
    args = parser.parse_args(["train", "--weights", "none", "--format", "via", "--dataset",
                              str(folders / "via" / "via_region_data.json"),
                              "--class-attribute", "kind", "--default-class", "balloon",
                              "--val-dataset", str(folders / "via" / "via_region_data.json")])
    assert args.format == "via"
    from mrcnn.data.formats import load_format_datasets
    train, val = load_format_datasets(args, "train")
    assert train.class_names == val.class_names == ["BG", "balloon", "box"]
    config = balloon.balloon_config(train.num_classes)
    assert config.NUM_CLASSES == 3 and config.NAME == "balloon"
    assert balloon.balloon_config().NUM_CLASSES == 2
    inference = balloon.balloon_config(3, balloon.BalloonInferenceConfig)
    assert inference.NUM_CLASSES == 3 and inference.BATCH_SIZE == 1
    assert parser.parse_args(["train", "--weights", "none", "--dataset", "d"]).format == "balloon"
    with pytest.raises(SystemExit):
        balloon.main(["train", "--weights", "none", "--format", "labelme"])
    assert "--format labelme needs --dataset" in capsys.readouterr().err
