"""``import mrcnn.model as modellib`` exposes the classic names, loaded lazily."""
import subprocess
import sys

import pytest


def test_classic_modellib_names_resolve_to_the_implementations():
    import mrcnn.model as modellib
    from mrcnn.data import pipeline
    from mrcnn.model import maskrcnn
    from mrcnn.ops import boxes
    assert modellib.MaskRCNN is maskrcnn.MaskRCNN
    assert modellib.load_image_gt is pipeline.load_image_gt
    assert modellib.norm_boxes_graph is boxes.norm_boxes_tf
    for name in modellib.__all__:
        assert getattr(modellib, name) is not None, name
    from mrcnn.model import log  # classic: from mrcnn.model import log
    assert callable(log)
    with pytest.raises(AttributeError):
        modellib.no_such_name


def test_light_submodules_do_not_import_tensorflow():
    code = ("import sys, mrcnn.model.pretrained, mrcnn.cli, mrcnn.model.debug; "
            "print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
