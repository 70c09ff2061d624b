"""The runtime refuses an .onnx whose tfrecog metadata is malformed JSON, of the wrong type or missing keys."""

import json

import numpy as np
import onnx
import pytest
import tfrecog_runtime as runtime

GOOD = {"kind": "encoder", "inputs": {"x": 2}, "input_name": "x", "input_size": 2, "output_names": ["mean"],
        "sample_outputs": [], "input_domain": "real", "batch_size": None}


def write_onnx(path, metadata, outputs=("mean",)):
    """A tiny graph x [N, 2] -> each output = x, with `metadata` (a string, stored as is) under the tfrecog key."""
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], [name]) for name in outputs], "tiny",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 2])],
        [onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [None, 2]) for name in outputs])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    onnx.helper.set_model_props(model, {runtime.runtime.METADATA_KEY: metadata})
    onnx.save(model, path)
    return path


def test_good_metadata_loads_and_runs(tmp_path):
    encoder = runtime.load(write_onnx(tmp_path / "m.onnx", json.dumps(GOOD)))
    np.testing.assert_array_equal(encoder(np.ones((3, 2)))["mean"], np.ones((3, 2), np.float32))


@pytest.mark.parametrize("metadata, expected", [
    ("{not json", "is not valid JSON"),
    ("", "is not valid JSON"),
    ("[1, 2]", "is a JSON list"),
    ("null", "is a JSON NoneType"),
    (json.dumps({**GOOD, "output_names": None}), "'output_names' must be a non-empty list of distinct names"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "output_names"}), "'output_names' .* got nothing"),
    (json.dumps({**GOOD, "output_names": ["mean", "mean"]}), "'output_names' must be a non-empty list of distinct"),
    (json.dumps({**GOOD, "inputs": {"x": "2"}}), "'inputs' must be a non-empty object"),
    (json.dumps({**GOOD, "inputs": {"x": 0}}), "'inputs' must be a non-empty object"),
    (json.dumps({**GOOD, "inputs": [2]}), "'inputs' must be a non-empty object"),
    (json.dumps({"output_names": ["mean"]}), "'input_name' must be a name"),
    (json.dumps({"output_names": ["mean"], "input_name": "x", "input_size": 2.5}), "'input_size' must be an integer"),
    (json.dumps({**GOOD, "noise_inputs": {"eps": -1}}), "'noise_inputs'"),
    (json.dumps({**GOOD, "sample_outputs": ["z"]}), "'sample_outputs' must be a list of names among output_names"),
    (json.dumps({**GOOD, "sample_outputs": ["mean"]}), "'sample_outputs' must be empty where there are no noise"),
    (json.dumps({**GOOD, "input_domain": "ternary"}), "'input_domain' must be one of real, binary"),
    (json.dumps({**GOOD, "kind": 3}), "'kind' must be one of encoder, decoder"),
    (json.dumps({**GOOD, "batch_size": True}), "'batch_size' must be null"),
    (json.dumps({**GOOD, "preprocessing": ["x"]}), "'preprocessing' must be text"),
    (json.dumps({**GOOD, "inputs": {"y": 2}}), r"metadata names inputs \['y'\], the graph has \['x'\]"),
    (json.dumps({**GOOD, "output_names": ["z"]}), r"metadata names outputs \['z'\], the graph has \['mean'\]"),
    (json.dumps({**GOOD, "inputs": {"x": 5}}), "metadata gives input 'x' size 5, the graph 2"),
], ids=lambda v: v[:40] if isinstance(v, str) else None)
def test_malformed_metadata_is_a_one_line_input_error(tmp_path, metadata, expected):
    path = write_onnx(tmp_path / "m.onnx", metadata)
    with pytest.raises(runtime.InputError, match=expected) as err:
        runtime.load(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
