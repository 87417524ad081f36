"""The REST bodies and gRPC requests of docs/deploy.md, served by the SavedModel in process.

No TF Serving server runs here, so each test plays the server's part the way TF Serving does it:
the REST body goes through JSON text, {"b64": ...} values are decoded for string inputs, inputs
are stacked by name and fed to the named signature, the outputs go back as "predictions" rows;
gRPC requests and responses go through their serialized protobuf bytes.
"""
import base64
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from mrcnn.export.tf_serving import (grpc_request, grpc_response_to_arrays, rest_request,
                                     rest_response_to_arrays)

DOC = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"


def _serve_rest(loaded, body_text):
    body = json.loads(body_text)
    signature = loaded.signatures[body.get("signature_name", "serving_default")]
    specs = signature.structured_input_signature[1]
    feeds = {}
    for name, spec in specs.items():
        values = [row[name] for row in body["instances"]]
        if spec.dtype == tf.string:
            values = [base64.b64decode(v["b64"]) for v in values]
            feeds[name] = tf.constant(values, dtype=tf.string)
        else:
            feeds[name] = tf.constant(np.asarray(values), dtype=spec.dtype)
    outputs = {k: v.numpy() for k, v in signature(**feeds).items()}
    batch = len(body["instances"])
    return json.dumps({"predictions": [{k: v[i].tolist() for k, v in outputs.items()}
                                       for i in range(batch)]})


def _direct(loaded, name, images):
    if name == "image_bytes":
        feed = {"image_bytes": tf.constant([tf.io.encode_png(im).numpy() for im in images])}
    else:
        feed = {"images": tf.constant(np.stack(images))}
    return {k: v.numpy() for k, v in loaded.signatures[name](**feed).items()}


@pytest.mark.parametrize("name", ["serving_default", "mask_probabilities", "image_bytes"])
def test_rest_request_and_response(loaded, images, name):
    image = images[1]
    if name == "image_bytes":
        body = rest_request(name, image_bytes=[tf.io.encode_png(image).numpy()])
        assert set(body["instances"][0]["image_bytes"]) == {"b64"}
    else:
        body = rest_request(name, images=image[None])
    answer = rest_response_to_arrays(json.loads(_serve_rest(loaded, json.dumps(body))))
    expected = _direct(loaded, name, [image])
    assert set(answer) == set(expected)
    assert int(answer["num_detections"][0]) > 0
    for key, value in expected.items():
        assert answer[key].dtype == value.dtype, key
        np.testing.assert_allclose(answer[key], value, rtol=1e-6, atol=1e-6, err_msg=key)


@pytest.mark.parametrize("name", ["serving_default", "image_bytes"])
def test_grpc_predict_request_round_trip(loaded, images, name):
    from tensorflow_serving.apis import predict_pb2

    image = images[0]
    if name == "image_bytes":
        request = grpc_request("mrcnn", name, image_bytes=[tf.io.encode_png(image).numpy()])
    else:
        request = grpc_request("mrcnn", name, images=image[None])
    received = predict_pb2.PredictRequest.FromString(request.SerializeToString())
    assert received.model_spec.name == "mrcnn" and received.model_spec.signature_name == name
    feeds = {k: tf.constant(tf.make_ndarray(v)) for k, v in received.inputs.items()}
    outputs = loaded.signatures[name](**feeds)
    response = predict_pb2.PredictResponse()
    for key, value in outputs.items():
        response.outputs[key].CopyFrom(tf.make_tensor_proto(value.numpy()))
    answer = grpc_response_to_arrays(predict_pb2.PredictResponse.FromString(
        response.SerializeToString()))
    expected = _direct(loaded, name, [image])
    assert set(answer) == set(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(answer[key], value, err_msg=key)


def test_docs_show_the_tested_requests():
    text = DOC.read_text()
    for snippet in ('"signature_name": "image_bytes"', '{"b64":', "rest_request(",
                    "grpc_request(", "PredictionServiceStub", ":8501/v1/models/mrcnn:predict",
                    '"signature_name": "mask_probabilities"'):
        assert snippet in text, snippet
