"""Client side of TF Serving for an exported model: REST bodies and gRPC PredictRequests.

Self-contained on purpose (NumPy, json, base64; gRPC also ``tensorflow-serving-api`` and
``tensorflow``'s TensorProto): a client can copy this file without installing mrcnn.
docs/deploy.md shows it in use with ``curl``, ``requests`` and a gRPC channel.

REST (``POST http://HOST:8501/v1/models/NAME:predict``) uses the row ("instances") format: one
object per image, ``{"images": [[[r, g, b], ...], ...]}``, or ``{"image_bytes": {"b64": "..."}}``
for encoded files (TF Serving base64-decodes ``{"b64": ...}`` values of string inputs). The
answer is ``{"predictions": [{"detection_boxes": ..., ...}, ...]}``, one object per image.
"""
import base64

import numpy as np

__all__ = ["rest_request", "rest_response_to_arrays", "grpc_request", "grpc_response_to_arrays"]


def rest_request(signature_name="serving_default", images=None, image_bytes=None):
    """JSON-ready body of a REST predict call.

    Args:
        signature_name: "serving_default", "mask_probabilities" or "image_bytes".
        images: [B, H, W, 3] uint8 (or a list of same-sized [H, W, 3] images), for the first two.
        image_bytes: list of encoded JPEG/PNG files (bytes), for "image_bytes".
    Returns:
        dict, e.g. ``{"signature_name": "serving_default", "instances": [{"images": [...]}]}``.
    """
    if (images is None) == (image_bytes is None):
        raise ValueError("give exactly one of images= and image_bytes=")
    if image_bytes is not None:
        instances = [{"image_bytes": {"b64": base64.b64encode(data).decode("ascii")}}
                     for data in image_bytes]
    else:
        batch = np.asarray(images)
        if batch.ndim != 4 or batch.shape[-1] != 3 or batch.dtype != np.uint8:
            raise ValueError(f"images must be uint8 [B, H, W, 3], got {batch.dtype} "
                             f"{batch.shape}")
        instances = [{"images": image.tolist()} for image in batch]
    return {"signature_name": signature_name, "instances": instances}


_DTYPES = {"detection_boxes": np.float32, "detection_scores": np.float32,
           "detection_mask_probabilities": np.float32, "detection_classes": np.int32,
           "num_detections": np.int32, "detection_masks": np.uint8}


def rest_response_to_arrays(response):
    """``{"predictions": [...]}`` (parsed JSON) -> {output name: [B, ...] NumPy array}."""
    rows = response["predictions"]
    return {name: np.asarray([row[name] for row in rows], dtype=_DTYPES.get(name))
            for name in rows[0]}


def grpc_request(model_name, signature_name="serving_default", images=None, image_bytes=None):
    """A ``tensorflow_serving.apis.predict_pb2.PredictRequest`` for the exported model.

    Same arguments as :func:`rest_request` plus the served model's name. Send it with
    ``prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout)``.
    """
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    if (images is None) == (image_bytes is None):
        raise ValueError("give exactly one of images= and image_bytes=")
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if image_bytes is not None:
        request.inputs["image_bytes"].CopyFrom(
            tf.make_tensor_proto(list(image_bytes), dtype=tf.string))
    else:
        request.inputs["images"].CopyFrom(
            tf.make_tensor_proto(np.asarray(images, dtype=np.uint8), dtype=tf.uint8))
    return request


def grpc_response_to_arrays(response):
    """``PredictResponse`` -> {output name: NumPy array}."""
    import tensorflow as tf

    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
