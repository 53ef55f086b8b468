"""Dense networks computed: predict against a numpy forward pass, Jacobians against finite
differences, the seed's network against Keras, training against Keras' own fit and a numpy SGD
loop, and the two backends against each other."""

from __future__ import annotations

import numpy as np
import pytest

from labcrunch_service import backends, progress
from labcrunch_service.cache import TRACES
from labcrunch_service.nn.architecture import Architecture, Layer, Network
from labcrunch_service.nn.dense import train
from labcrunch_service.settings import Limits
from tests.conftest import assert_problem
from tests.helpers.nn_oracle import SEED, forward, keras_model, network

BACKENDS = ["jax", "tensorflow"]
LIMITS = Limits()
MIXED = network(3, [(6, "gelu"), (5, "elu"), (5, "selu", False), (4, "swish"), (4, "tanh"),
                    (3, "relu"), (3, "softplus"), (3, "sin"), (2, "sigmoid"), (3, "softmax")])
ACTIVATIONS = [layer["activation"] for layer in MIXED["layers"]]


def post(api, route, **body):
    r = api.post(f"/v1/nn/dense/{route}", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def weights_of(body):
    return [(np.array(w["kernel"]), None if w["bias"] is None else np.array(w["bias"]))
            for w in body["weights"]]


@pytest.fixture(scope="module")
def mixed_weights(api):
    return weights_of(post(api, "weights", network={**MIXED, "seed": 11}))


@pytest.mark.parametrize("backend", BACKENDS)
def test_predict_equals_a_numpy_forward_pass_with_the_returned_weights(api, backend, mixed_weights):
    x = np.random.default_rng(2).normal(size=(7, 3)) * 2
    out = post(api, "predict", network={**MIXED, "seed": 11}, x=x.tolist(), backend=backend)
    np.testing.assert_allclose(out["outputs"], forward(mixed_weights, ACTIVATIONS, x),
                               rtol=1e-12, atol=1e-15)
    assert out["backend"] == backend and out["dtype"] == "float64" and out["warnings"] == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_explicit_weights_and_float32(api, backend, mixed_weights):
    spec = {**MIXED, "weights": [{"kernel": k.tolist(), "bias": None if b is None else b.tolist()}
                                 for k, b in mixed_weights]}
    x = np.random.default_rng(3).normal(size=(5, 3))
    out = post(api, "predict", network=spec, x=x.tolist(), backend=backend, dtype="float32")
    np.testing.assert_allclose(out["outputs"], forward(mixed_weights, ACTIVATIONS, x), rtol=1e-5,
                               atol=1e-6)
    assert out["dtype"] == "float32"


@pytest.mark.parametrize("backend", BACKENDS)
def test_jacobian_equals_finite_differences(api, backend, mixed_weights):
    x = np.random.default_rng(4).normal(size=(4, 3))
    out = post(api, "predict", network={**MIXED, "seed": 11}, x=x.tolist(), backend=backend,
               jacobian=True)
    jacobian = np.array(out["jacobian"])
    assert jacobian.shape == (4, 3, 3)
    h = 1e-6
    for j in range(3):
        step = np.zeros(3)
        step[j] = h
        central = (forward(mixed_weights, ACTIVATIONS, x + step)
                   - forward(mixed_weights, ACTIVATIONS, x - step)) / (2 * h)
        np.testing.assert_allclose(jacobian[:, :, j], central, rtol=1e-6, atol=1e-9)


def test_the_seed_network_always_answers_1_as_keras_does(api):
    """The seed notebook's network ends in softmax over one unit: its output is the constant 1
    (Keras itself agrees), and the answer says why."""
    keras = backends.tensorflow().keras
    model = keras_model(keras, 4, [(64, "relu", True), (32, "relu", True), (1, "softmax", True)],
                        functional=True)
    for rows in ([[1, 2, 3, 4]], [[1, 2, 3, 4], [1, 2, 3, 4]]):
        np.testing.assert_array_equal(model(np.array(rows)).numpy(), np.ones((len(rows), 1)))
        for backend in BACKENDS:
            out = post(api, "predict", network=SEED, x=rows, backend=backend, jacobian=True)
            assert out["outputs"] == [[1.0]] * len(rows)
            assert np.array(out["jacobian"]).tolist() == [[[0.0] * 4]] * len(rows)
            assert "softmax to 1 unit" in out["warnings"][0]
    fit = post(api, "train", network=SEED, x=[[1, 2, 3, 4], [4, 3, 2, 1]], y=[0, 1],
               loss="binary_crossentropy", optimizer="sgd", learning_rate=0.1, epochs=3)
    assert any("softmax to 1 unit" in w for w in fit["warnings"])
    # every gradient is 0: training changes no weight, and the loss stays where it started
    for (kernel, bias), (start_kernel, start_bias) in zip(
            weights_of(fit), weights_of(post(api, "weights", network=SEED)), strict=True):
        np.testing.assert_array_equal(kernel, start_kernel)
        np.testing.assert_array_equal(bias, start_bias)
    assert len(set(fit["history"]["loss"])) == 1


def blobs(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two Gaussian blobs 6σ apart along (1, 1): separable but for ~1 point in 10^9."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 2)) + (labels[:, None] * 2 - 1) * 3 / np.sqrt(2)
    return x, labels.astype(np.float64)


SEPARABLE = {"loss": "binary_crossentropy", "optimizer": "adam", "learning_rate": 0.05,
             "batch_size": 32, "validation_split": 0.25, "metrics": ["accuracy"], "limits": LIMITS}


def test_training_on_separable_data_reaches_full_accuracy(api):
    x, labels = blobs()
    settings = {k: v for k, v in SEPARABLE.items() if k != "limits"}
    fit = post(api, "train", network=network(2, [(4, "tanh"), (1, "sigmoid")], seed=1),
               x=x.tolist(), y=labels.tolist(), epochs=15, **settings)
    history = fit["history"]
    assert list(history) == ["loss", "accuracy", "val_loss", "val_accuracy"]
    assert history["val_accuracy"][-1] >= 0.99 and history["accuracy"][-1] >= 0.98
    assert history["loss"][-1] < 0.1 * history["loss"][0]
    assert (fit["training_samples"], fit["validation_samples"], fit["epochs"]) == (300, 100, 15)
    assert fit["warnings"] == [] and not fit["diverged"]
    # the returned weights classify the held-out rows themselves
    probability = forward(weights_of(fit), ["tanh", "sigmoid"], x[300:])[:, 0]
    assert np.mean((probability > 0.5) == (labels[300:] == 1)) >= 0.99


AGREEMENT = [  # (network, loss, y kind, optimizer, options)
    (network(4, [(8, "tanh"), (3, "softmax")]), "categorical_crossentropy", "one_hot", "adam", {}),
    (network(4, [(6, "relu"), (1, "sigmoid")]), "binary_crossentropy", "binary", "nesterov",
     {"momentum": 0.8}),
    (network(4, [(5, "gelu"), (2, "linear")]), "mse", "real", "rmsprop", {"centered": True}),
]


def targets(kind: str, x: np.ndarray) -> np.ndarray:
    if kind == "one_hot":
        return np.eye(3)[(x[:, 0] > 0).astype(int) + (x[:, 1] > 0)]
    if kind == "binary":
        return (x[:, 0] * x[:, 1] > 0).astype(np.float64)
    return np.column_stack([np.sin(x[:, 0]), x[:, 1] * x[:, 2]])


@pytest.mark.parametrize(("spec", "loss", "kind", "optimizer", "options"), AGREEMENT,
                         ids=[case[1] for case in AGREEMENT])
def test_tensorflow_and_jax_histories_agree(spec, loss, kind, optimizer, options):
    x = np.random.default_rng(5).normal(size=(150, 4))
    net = Network(Architecture(4, tuple(Layer(layer["units"], layer["activation"])
                                        for layer in spec["layers"])), seed=3)
    runs = {backend: train(net, x, targets(kind, x), loss=loss, optimizer=optimizer,
                           learning_rate=0.02, options=options, epochs=4, batch_size=16,
                           validation_split=0.2, metrics=["accuracy", "mae"], backend=backend,
                           limits=LIMITS) for backend in BACKENDS}
    jax_run, tf_run = runs["jax"], runs["tensorflow"]
    assert list(jax_run.history) == list(tf_run.history)
    for name, values in jax_run.history.items():
        np.testing.assert_allclose(tf_run.history[name], values, rtol=1e-10, err_msg=name)
    for (k_jax, b_jax), (k_tf, b_tf) in zip(jax_run.weights, tf_run.weights, strict=True):
        np.testing.assert_allclose(k_tf, k_jax, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(b_tf, b_jax, rtol=1e-9, atol=1e-12)
    assert jax_run.history["loss"][-1] < jax_run.history["loss"][0]


def test_validation_split_and_history_as_keras_fit_computes_them():
    """Keras' own fit (SGD, no shuffling, validation_split) from the same weights: the same
    losses (to Keras' float32 loss tracker) and weights."""
    keras = backends.tensorflow().keras
    x = np.random.default_rng(6).normal(size=(103, 3))
    y = np.column_stack([x[:, 0] - 2 * x[:, 1], np.tanh(x[:, 2])])
    net = Network(Architecture(3, (Layer(4, "tanh"), Layer(2))), seed=9)
    ours = train(net, x, y, loss="mse", optimizer="sgd", learning_rate=0.1, epochs=3,
                 batch_size=10, validation_split=0.3, shuffle=False, limits=LIMITS)
    model = keras_model(keras, 3, [(4, "tanh", True), (2, "linear", True)], dtype="float64")
    model.set_weights([a for pair in net.initial_weights() for a in pair])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    history = model.fit(x, y, batch_size=10, epochs=3, validation_split=0.3, shuffle=False,
                        verbose=0).history
    assert ours.training_samples == 72 and ours.validation_samples == 31
    np.testing.assert_allclose(ours.history["loss"], history["loss"], rtol=1e-5)
    np.testing.assert_allclose(ours.history["val_loss"], history["val_loss"], rtol=1e-5)
    for (kernel, bias), (keras_kernel, keras_bias) in zip(
            ours.weights, zip(model.get_weights()[::2], model.get_weights()[1::2], strict=True),
            strict=True):
        np.testing.assert_allclose(kernel, keras_kernel, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(bias, keras_bias, rtol=1e-4, atol=1e-6)


def numpy_sgd(kernel, bias, x, y, *, learning_rate, epochs, batch_size, seed):
    """Minibatch SGD on one linear layer with Keras' mse (mean over samples and units), visiting
    the rows in numpy ``default_rng(seed).permutation`` order, epoch by epoch."""
    rng = np.random.default_rng(seed)
    losses = []
    for _ in range(epochs):
        order, total = rng.permutation(len(x)), 0.0
        for start in range(0, len(x), batch_size):
            rows = order[start:start + batch_size]
            residual = x[rows] @ kernel + bias - y[rows]
            total += len(rows) * np.mean(residual**2)
            scale = 2 / residual.size
            kernel = kernel - learning_rate * scale * x[rows].T @ residual
            bias = bias - learning_rate * scale * residual.sum(axis=0)
        losses.append(total / len(x))
    return np.array(losses), kernel, bias


@pytest.mark.parametrize("backend", BACKENDS)
def test_shuffled_sgd_equals_a_numpy_loop(backend):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(45, 3))
    y = x @ np.array([[1.0, -1.0], [2.0, 0.5], [0.0, 3.0]]) + 0.5
    net = Network(Architecture(3, (Layer(2),)), seed=4)
    (kernel, bias), = net.initial_weights()
    losses, kernel, bias = numpy_sgd(kernel, bias, x, y, learning_rate=0.05, epochs=3,
                                     batch_size=8, seed=12)
    ours = train(net, x, y, loss="mse", optimizer="sgd", learning_rate=0.05, epochs=3,
                 batch_size=8, seed=12, backend=backend, limits=LIMITS)
    np.testing.assert_allclose(ours.history["loss"], losses, rtol=1e-12)
    np.testing.assert_allclose(ours.weights[0][0], kernel, rtol=1e-12)
    np.testing.assert_allclose(ours.weights[0][1], bias, rtol=1e-12)


def test_sparse_labels_train_as_one_hot_targets_do():
    x = np.random.default_rng(8).normal(size=(60, 4))
    labels = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0)
    # Keras takes the logits of a softmax output for categorical cross-entropy but clips the
    # probabilities for the sparse one: with from_logits on a linear output both read logits.
    logits = Network(Architecture(4, (Layer(5, "relu"), Layer(3))), seed=2)
    common = {"from_logits": True, "learning_rate": 0.01, "epochs": 2, "batch_size": 8,
              "metrics": ["accuracy"], "limits": LIMITS}
    sparse = train(logits, x, labels, loss="sparse_categorical_crossentropy", **common)
    one_hot = train(logits, x, np.eye(3)[labels], loss="categorical_crossentropy", **common)
    np.testing.assert_allclose(sparse.history["loss"], one_hot.history["loss"], rtol=1e-12)
    np.testing.assert_allclose(sparse.history["accuracy"], one_hot.history["accuracy"])


def test_a_sigmoid_output_hands_its_logits_to_binary_crossentropy():
    """As Keras computes it: the loss of a sigmoid output is the logits' loss, exactly that of a
    linear output with from_logits (no clipping at 1e-7)."""
    x, labels = blobs()
    sigmoid = train(Network(Architecture(2, (Layer(4, "tanh"), Layer(1, "sigmoid"))), seed=1), x,
                    labels, epochs=3, **SEPARABLE)
    linear = train(Network(Architecture(2, (Layer(4, "tanh"), Layer(1))), seed=1), x, labels,
                   epochs=3, from_logits=True, **SEPARABLE)
    for name, values in sigmoid.history.items():
        np.testing.assert_allclose(linear.history[name], values, rtol=1e-12, err_msg=name)


def test_a_diverging_training_stops_and_says_so():
    x = np.random.default_rng(9).normal(size=(45, 3)) * 100
    fit = train(Network(Architecture(3, (Layer(2),)), seed=4), x, x[:, :2] ** 2, loss="mse",
                optimizer="sgd", learning_rate=10.0, epochs=50, batch_size=8, limits=LIMITS)
    assert fit.diverged and fit.epochs < 50 and len(fit.history["loss"]) == fit.epochs
    assert not np.isfinite(fit.history["loss"][-1])


def test_progress_counts_epochs_and_a_new_rate_compiles_nothing():
    x, labels = blobs()
    net = Network(Architecture(2, (Layer(4, "tanh"), Layer(1, "sigmoid"))), seed=1)
    train(net, x, labels, epochs=1, **SEPARABLE)
    tracker = progress.Tracker()
    before = TRACES["nn.jax"]
    with progress.tracking(tracker):
        train(net, x[:390], labels[:390], epochs=3, **(SEPARABLE | {"learning_rate": 0.3}))
    assert TRACES["nn.jax"] == before  # nearby sizes share bucketed shapes; rates are arguments
    assert (tracker.done, tracker.total, tracker.unit) == (3, 3, "epochs")


def test_missing_tensorflow_is_503_and_jax_still_works(api, monkeypatch):
    from labcrunch_service.errors import BackendUnavailable

    def unavailable():
        raise BackendUnavailable("The tensorflow backend is not available on this server; use 'jax'.")

    monkeypatch.setattr(backends, "tensorflow", unavailable)
    spec = network(2, [(2, "relu"), (1, "linear")], seed=0)
    for route, extra in (("predict", {}), ("train", {"y": [1.0]})):
        body = assert_problem(api.post(f"/v1/nn/dense/{route}", json={
            "network": spec, "x": [[1.0, 2.0]], "backend": "tensorflow", **extra}), 503)
        assert "jax" in body["detail"]
    assert len(post(api, "predict", network=spec, x=[[1.0, 2.0]])["outputs"]) == 1
