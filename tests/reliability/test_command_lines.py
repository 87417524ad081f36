"""Reliability catalogue, group "command lines": every sample with a wrong folder, file or
option fails before building a model, naming what is wrong; the shared --weights rules."""
import pytest

from mrcnn.cli import (CLASS_SPECIFIC_LAYERS, default_layers, parse_config_overrides,
                       resolve_weights_path, weights_exclude)
from samples.balloon import balloon
from samples.coco import coco as coco_sample
from samples.nucleus import nucleus


def _exit(main, argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    return exc.value.code, capsys.readouterr().err


COCO_BAD = [
    ("no-model", ["train", "--dataset", "d"], "--model is required"),
    ("no-dataset", ["train", "--model", "none"], "--dataset"),
    ("dataset-folder-missing", ["evaluate", "--dataset", "{tmp}/nowhere", "--model", "none"],
     "nowhere"),
    ("annotations-missing", ["train", "--annotations", "{tmp}/none.json", "--images", "{tmp}",
                             "--model", "none"], "none.json"),
    ("unknown-command", ["fit", "--model", "none"], "invalid choice"),
]


@pytest.mark.parametrize("case,argv,text", COCO_BAD, ids=[c[0] for c in COCO_BAD])
def test_coco_command_line_errors_name_the_culprit(tmp_path, capsys, case, argv, text):
    argv = [a.format(tmp=tmp_path) for a in argv]
    code, err = _exit(coco_sample.main, argv, capsys)
    assert code == 2 and text.format(tmp=tmp_path) in err


BALLOON_BAD = [
    ("no-weights", ["train", "--dataset", "{tmp}"], SystemExit, None),
    ("dataset-missing", ["train", "--dataset", "{tmp}/nowhere", "--weights", "none"],
     FileNotFoundError, "nowhere"),
    ("dataset-not-given", ["train", "--weights", "none"], FileNotFoundError, "--dataset"),
    ("splash-without-input", ["splash", "--weights", "none"], SystemExit, None),
    ("splash-image-and-video", ["splash", "--weights", "none", "--image", "a", "--video", "b"],
     SystemExit, None),
]


@pytest.mark.parametrize("case,argv,error,text", BALLOON_BAD, ids=[b[0] for b in BALLOON_BAD])
def test_balloon_command_line_errors_name_the_culprit(tmp_path, capsys, case, argv, error, text):
    argv = [a.format(tmp=tmp_path) for a in argv]
    with pytest.raises(error) as err:
        balloon.main(argv)
    if error is SystemExit:
        assert err.value.code == 2 and capsys.readouterr().err.strip()
    else:
        assert text in str(err.value)


NUCLEUS_BAD = [
    ("dataset-missing", ["train", "--dataset", "{tmp}/nowhere"], FileNotFoundError, "nowhere"),
    ("dataset-not-given", ["train"], SystemExit, None),
    ("bad-config-kind", ["train", "--dataset", "{tmp}", "--config", "gpu"], SystemExit, None),
]


@pytest.mark.parametrize("case,argv,error,text", NUCLEUS_BAD, ids=[n[0] for n in NUCLEUS_BAD])
def test_nucleus_command_line_errors_name_the_culprit(tmp_path, capsys, case, argv, error, text):
    argv = [a.format(tmp=tmp_path) for a in argv]
    with pytest.raises(error) as err:
        nucleus.main(argv)
    if text is not None:
        assert text in str(err.value)


def test_weights_path_that_does_not_exist_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        resolve_weights_path(None, str(tmp_path / "missing.h5"))


@pytest.mark.parametrize("item", ["LEARNING_RATE", "lr=0.1", "LEARNING_RATE=abc"])
def test_bad_set_override_is_named(item):
    with pytest.raises(ValueError, match="LEARNING_RATE|lr=0.1"):
        parse_config_overrides([item])


# One --weights coco rule across samples: exclude the class-specific layers only when the class
# count differs from COCO's 81; without pretrained weights train all layers.
@pytest.mark.parametrize("spec,num_classes,expected", [
    ("coco", 2, CLASS_SPECIFIC_LAYERS),
    ("coco", 81, None),
    ("COCO", 4, CLASS_SPECIFIC_LAYERS),
    ("imagenet", 2, None),
    ("path/to/mine.h5", 2, None),
], ids=["coco-2-classes", "coco-81-classes", "coco-upper-case", "imagenet", "path"])
def test_one_weights_exclude_rule(spec, num_classes, expected):
    assert weights_exclude(spec, num_classes) == expected


@pytest.mark.parametrize("spec,expected", [("none", "all"), (None, "all"), ("coco", "heads"),
                                           ("imagenet", "heads"), ("last", "heads")])
def test_no_pretrained_weights_train_all_layers(spec, expected):
    assert default_layers(spec) == expected


def test_coco_sample_without_weights_trains_all_layers_in_every_stage():
    stages = coco_sample.build_schedule(0.01, None, None, from_scratch=True)
    assert [s.layers for s in stages] == ["all", "all", "all"]
    assert [s.layers for s in coco_sample.build_schedule(0.01)] == ["heads", "4+", "all"]
