"""labcrunch.nn against the in-process app: the Network spec, DenseNetwork used like a Keras model,
JSON and .npz transfer, the async twin, saved weights, plot()."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import asyncio  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from labcrunch import ValidationError  # noqa: E402
from labcrunch.nn import Dense, DenseSummary, DenseTraining, Network  # noqa: E402
from tests.helpers.nn_oracle import forward  # noqa: E402

LAYERS = [Dense(4, "tanh"), Dense(2, "sigmoid", use_bias=False)]


def data(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(seed).normal(size=(rows, 3))
    return x, np.column_stack([x[:, 0] > 0, x[:, 1] + x[:, 2] > 0]).astype(np.float64)


def test_network_spec_round_trips_and_counts_parameters(tmp_path):
    net = Network.of(3, [(4, "tanh"), Dense(2, "sigmoid", use_bias=False)], seed=3)
    assert Network.from_json(net.to_json()) == net and net.parameter_count == 16 + 8
    weights = [(np.ones((3, 4)), np.zeros(4)), (np.full((4, 2), 0.5), None)]
    explicit = net.with_weights(weights)
    assert explicit.seed is None and "seed" not in explicit.to_json()
    saved = explicit.save_weights(tmp_path / "w.npz")
    loaded = Network.of(3, LAYERS).load_weights(saved)
    for (k, b), (k2, b2) in zip(loaded.weights, weights, strict=True):
        np.testing.assert_array_equal(k, k2)
        assert (b is None and b2 is None) or np.array_equal(b, b2)
    assert Network.from_json(explicit.to_json(weights=True)).weights[1][1] is None
    with pytest.raises(ValueError, match="no explicit weights"):
        net.save_weights(tmp_path / "none.npz")


def test_a_dense_network_is_used_like_a_keras_model(lc, tmp_path):
    net = lc.dense(3, LAYERS, seed=5)
    summary = net.summary()
    assert isinstance(summary, DenseSummary) and summary.total_parameters == 24
    assert "dense_1 (Dense)" in str(summary) and "Total params: 24" in str(summary)
    x, y = data(40)
    before = net.predict(x)
    weights = net.get_weights()
    np.testing.assert_allclose(before, forward(weights, ["tanh", "sigmoid"], x), rtol=1e-12)
    fit = net.train(x, y, loss="binary_crossentropy", learning_rate=0.05, epochs=3, batch_size=8,
                    metrics=["accuracy"], validation_split=0.25)
    assert isinstance(fit, DenseTraining) and fit.epochs == 3
    assert set(fit.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert net.network.weights is not None and "epochs=3" in repr(fit)
    np.testing.assert_allclose(net.predict(x), forward(fit.weights, ["tanh", "sigmoid"], x),
                               rtol=1e-12)  # predict now uses the trained weights, as Keras
    assert net.jacobian(x[:2]).shape == (2, 2, 3)
    saved = net.save_weights(tmp_path / "trained.npz")
    np.testing.assert_array_equal(Network.of(3, LAYERS).load_weights(saved).weights[0][0],
                                  fit.weights[0][0])


def test_large_data_travel_as_npz_and_agree_with_json(lc):
    x, y = data(4000, seed=1)  # 12,000 inputs: over the binary threshold
    net = Network.of(3, LAYERS, seed=2)
    binary = lc.dense_train(net, x, y, loss="binary_crossentropy", epochs=2, batch_size=500,
                            metrics=["mae"])
    as_json = lc.dense_train(net, x, y, loss="binary_crossentropy", epochs=2, batch_size=500,
                             metrics=["mae"], binary=False)
    for name, values in as_json.history.items():
        np.testing.assert_allclose(binary.history[name], values, rtol=1e-15)
    assert binary.optimizer == as_json.optimizer == "adam" and binary.training_samples == 4000
    prediction = lc.dense_predict(binary.network, x, jacobian=True)  # weights travel too
    np.testing.assert_allclose(prediction.outputs, forward(binary.weights, ["tanh", "sigmoid"], x),
                               rtol=1e-12)
    assert prediction.jacobian.shape == (4000, 2, 3)


def test_the_async_twin(async_client):
    async def run() -> tuple[np.ndarray, DenseTraining]:
        async with async_client() as alc:
            net = alc.dense(3, LAYERS, seed=5)
            fit = await net.train(*data(16), loss="binary_crossentropy", epochs=2)
            return await net.predict([[0.0, 1.0, 2.0]]), fit

    outputs, fit = asyncio.run(run())
    assert outputs.shape == (1, 2) and fit.epochs == 2


def test_errors_and_a_single_sample(lc):
    net = lc.dense(3, LAYERS)
    with pytest.raises(ValueError, match=r"\[\[0.0, 1.0, 2.0\]\]"):
        net.predict([0.0, 1.0, 2.0])
    with pytest.raises(ValidationError) as caught:
        net.train([[0.0, 1.0, 2.0]], [[1.0, 0.0, 1.0]])
    assert caught.value.status == 422 and caught.value.errors[0]["loc"] == ["body", "y"]


def test_plot_draws_training_and_validation_curves(lc):
    fit = lc.dense(3, LAYERS, seed=5).train(*data(40), loss="binary_crossentropy", epochs=3,
                                           validation_split=0.25, metrics=["accuracy"])
    ax = fit.plot()
    assert [line.get_label() for line in ax.get_lines()] == ["training", "validation"]
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "epoch"
    assert fit.plot(metric="accuracy").get_ylabel() == "accuracy"
    with pytest.raises(ValueError, match="mse"):
        fit.plot(metric="mse")
    plt.close("all")
