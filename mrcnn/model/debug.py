"""Small inspection helpers used by the notebooks: ``log`` prints a value's shape and range."""
import numpy as np

__all__ = ["log"]


def log(text, array=None):
    """Print ``text`` and, when given, the shape, min, max and dtype of ``array``.

    The classic notebooks call ``log("rpn_bbox", rpn_bbox)`` to eyeball intermediate tensors;
    the output format follows theirs: name padded to 25 characters, then ``shape``, ``min``,
    ``max`` and the dtype.
    """
    if array is not None:
        array = np.asarray(array)
        text = text.ljust(25)
        text += "shape: {:20}  ".format(str(array.shape))
        if array.size:
            text += "min: {:10.5f}  max: {:10.5f}".format(array.min(), array.max())
        else:
            text += "min: {:10}  max: {:10}".format("", "")
        text += "  {}".format(array.dtype)
    print(text)
