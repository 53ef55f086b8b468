"""The network spec as numbers: summaries against Keras' own model.summary() counts, Keras-style
initial weights, Keras' validation split, the design warnings. Oracles: Keras models built as the
seed notebook builds them, keras' own train_validation_split, the Glorot formula."""

from __future__ import annotations

import math

import numpy as np
import pytest

from labcrunch_service import backends
from labcrunch_service.errors import InvalidInput
from labcrunch_service.nn.architecture import Architecture, Layer, Network, checked_weights
from labcrunch_service.nn.data import split_at, targets_array
from labcrunch_service.nn.design import network_warnings, training_warnings
from tests.conftest import assert_problem
from tests.helpers.nn_oracle import SEED, keras_model, network

SPECS = [  # (inputs, [(units, activation, use_bias)]): the seed's network first
    (4, [(64, "relu", True), (32, "relu", True), (1, "softmax", True)]),
    (1, [(1, "linear", True)]),
    (10, [(7, "tanh", False), (3, "softmax", True)]),
    (3, [(5, "gelu", True), (5, "selu", False), (5, "swish", True), (2, "sigmoid", False)]),
    (128, [(256, "elu", True), (10, "softmax", True)]),
]


@pytest.fixture(scope="module")
def keras():
    return backends.tensorflow().keras


@pytest.mark.parametrize(("inputs", "layers"), SPECS)
def test_summary_equals_keras(api, keras, inputs, layers):
    model = keras_model(keras, inputs, layers, functional=inputs == 4)  # the seed's both ways
    r = api.post("/v1/nn/dense/summary", json={"network": network(inputs, layers)})
    assert r.status_code == 200, r.text
    body = r.json()
    keras_layers = [layer for layer in model.layers if layer.count_params() or layer.weights]
    assert [layer["parameters"] for layer in body["layers"]] == [
        layer.count_params() for layer in keras_layers]
    assert [layer["output_shape"] for layer in body["layers"]] == [
        list(layer.output.shape) for layer in keras_layers]
    assert body["total_parameters"] == body["trainable_parameters"] == model.count_params()
    assert body["non_trainable_parameters"] == 0
    assert body["input_shape"] == [None, inputs]
    assert [layer["name"] for layer in body["layers"]] == \
        ["dense"] + [f"dense_{i}" for i in range(1, len(layers))]


def test_the_seed_network_has_2433_parameters_and_its_softmax_warning(api):
    body = api.post("/v1/nn/dense/summary", json={"network": SEED}).json()
    assert body["total_parameters"] == 2433
    assert [layer["parameters"] for layer in body["layers"]] == [320, 2080, 33]
    (warning,) = body["warnings"]
    assert "softmax to 1 unit" in warning and "constant 1" in warning and "dense_2" in warning


def test_initial_weights_are_glorot_uniform_and_zero_biases():
    architecture = Architecture(300, (Layer(200, "relu"), Layer(100, "tanh", use_bias=False)))
    weights = Network(architecture, seed=5).initial_weights()
    assert [w[0].shape for w in weights] == [(300, 200), (200, 100)]
    np.testing.assert_array_equal(weights[0][1], np.zeros(200))
    assert weights[1][1] is None
    for (kernel, _), (fan_in, fan_out) in zip(weights, [(300, 200), (200, 100)], strict=True):
        limit = math.sqrt(6 / (fan_in + fan_out))
        assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.99 * limit
        # U(-a, a) has variance a²/3 = 2/(fan_in + fan_out): Glorot's
        assert abs(kernel.var() / (2 / (fan_in + fan_out)) - 1) < 0.02
        assert abs(kernel.mean()) < 0.01 * limit
    again = Network(architecture, seed=5).initial_weights()
    np.testing.assert_array_equal(again[0][0], weights[0][0])
    assert not np.array_equal(Network(architecture, seed=6).initial_weights()[0][0], weights[0][0])


@pytest.mark.parametrize(("rows", "split"), [(10, 0.2), (10, 0.7), (7, 0.3), (100, 0.33), (3, 0.5),
                                             (1000, 0.1)])
def test_validation_split_takes_the_rows_keras_takes(rows, split):
    from keras.src.trainers.data_adapters.array_slicing import train_validation_split

    data = np.arange(rows, dtype=np.float64)[:, None]
    (train,), (validation,) = train_validation_split((data,), validation_split=split)
    at = split_at(rows, split)
    np.testing.assert_array_equal(data[:at], train)
    np.testing.assert_array_equal(data[at:], validation)


def test_a_split_that_leaves_an_empty_part_is_refused_as_keras_refuses_it():
    from keras.src.trainers.data_adapters.array_slicing import train_validation_split

    with pytest.raises(ValueError):
        train_validation_split((np.zeros((3, 1)),), validation_split=0.9)
    with pytest.raises(InvalidInput) as caught:
        split_at(3, 0.9)
    assert caught.value.errors[0]["loc"] == ["validation_split"]


def test_weights_are_checked_layer_by_layer():
    architecture = Architecture(2, (Layer(3, "relu"), Layer(1, use_bias=False)))
    good = [(np.ones((2, 3)), np.zeros(3)), (np.ones((3, 1)), None)]
    assert [k.shape for k, _ in checked_weights(architecture, good)] == [(2, 3), (3, 1)]
    cases = [
        ([good[0]], ["network", "weights"]),
        ([(np.ones((3, 2)), np.zeros(3)), good[1]], ["network", "weights", 0, "kernel"]),
        ([(np.ones((2, 3)), None), good[1]], ["network", "weights", 0, "bias"]),
        ([good[0], (np.ones((3, 1)), np.zeros(1))], ["network", "weights", 1, "bias"]),
        ([(np.full((2, 3), np.nan), np.zeros(3)), good[1]], ["network", "weights", 0, "kernel"]),
        ([([[1, 2, 3], [1, 2]], np.zeros(3)), good[1]], ["network", "weights", 0, "kernel"]),
    ]
    for weights, loc in cases:
        with pytest.raises(InvalidInput) as caught:
            checked_weights(architecture, weights)
        assert caught.value.errors[0]["loc"] == loc


def test_designs_that_cannot_work_are_warned_about():
    seed = Architecture(4, (Layer(64, "relu"), Layer(32, "relu"), Layer(1, "softmax")))
    assert len(network_warnings(seed)) == 1
    assert network_warnings(Architecture(4, (Layer(2, "softmax"),))) == []
    hidden = network_warnings(Architecture(4, (Layer(1, "softmax"), Layer(3))))
    assert "every later layer sees a constant" in hidden[0]
    assert "derivative is 0" in network_warnings(Architecture(2, (Layer(2, "floor"), Layer(1))))[0]

    zero_one = np.array([[0.0], [1.0], [1.0]])
    sigmoid = Architecture(2, (Layer(1, "sigmoid"),))
    linear = Architecture(2, (Layer(1),))
    assert training_warnings(sigmoid, "binary_crossentropy", False, zero_one) == []
    assert "learns slowly" in training_warnings(sigmoid, "mse", False, zero_one)[0]
    assert "clipped" in training_warnings(linear, "binary_crossentropy", False, zero_one)[0]
    assert training_warnings(linear, "binary_crossentropy", True, zero_one) == []
    assert "not logits" in training_warnings(sigmoid, "binary_crossentropy", True, zero_one)[0]
    assert any("identically 0" in w for w in training_warnings(
        sigmoid, "categorical_crossentropy", False, np.ones((3, 1))))
    assert "never reach" in training_warnings(
        Architecture(2, (Layer(1, "tanh"),)), "mse", False, np.array([[0.5], [3.0]]))[0]
    assert "targets in [0, 1]" in training_warnings(
        sigmoid, "binary_crossentropy", False, np.array([[2.0]]))[0]


def test_sparse_labels_must_be_classes():
    architecture = Architecture(2, (Layer(3, "softmax"),))
    labels = targets_array([0, 2, 1], architecture, "sparse_categorical_crossentropy", 3)
    np.testing.assert_array_equal(labels, [[0], [2], [1]])
    for bad, row in (([0, 3, 1], 1), ([0, 1.5, 1], 1), ([-1, 0, 0], 0)):
        with pytest.raises(InvalidInput) as caught:
            targets_array(bad, architecture, "sparse_categorical_crossentropy", 3)
        assert caught.value.errors[0]["loc"] == ["y", row]


MALFORMED = [  # (network, where the 422 points)
    (network(4, [(0, "relu")]), ["body", "network", "layers", 0, "units"]),
    (network(4, [(3, "tanhh")]), ["body", "network", "layers", 0, "activation"]),
    (network(4, []), ["body", "network", "layers"]),
    (network(0, [(3, "relu")]), ["body", "network", "inputs"]),
    ({**network(4, [(3, "relu")]), "keras_json": "{}"}, ["body", "network", "keras_json"]),
    ({**network(4, [(3, "relu")]), "units": 3}, ["body", "network", "units"]),
    (network(4, [(3, "relu")], weights=[{"kernel": [[1, 2, 3]] * 3, "bias": [0, 0, 0]}]),
     ["body", "network", "weights", 0, "kernel"]),
    (network(2, [(1, "relu", False)], weights=[{"kernel": [[1], [2]], "bias": [0]}]),
     ["body", "network", "weights", 0, "bias"]),
    (network(2, [(1, "relu")], weights=[{"kernel": [[1], ["NaN"]], "bias": [0]}]),
     ["body", "network", "weights", 0, "kernel", 1, 0]),
    (network(2, [(1, "relu")], seed=1, weights=[{"kernel": [[1], [2]], "bias": [0]}]),
     ["body", "network"]),
    (network(2, [(True, "relu")]), ["body", "network", "layers", 0, "units"]),
]


@pytest.mark.parametrize(("spec", "loc"), MALFORMED)
def test_malformed_specs_are_422_naming_the_field(api, spec, loc):
    body = assert_problem(api.post("/v1/nn/dense/summary", json={"network": spec}), 422)
    assert any(error["loc"][:len(loc)] == loc for error in body["errors"]), body["errors"]
