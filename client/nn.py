"""Dense networks: the seed notebook's Keras models, computed on the server.

:class:`Network` is the spec (inputs, :class:`Dense` layers, a seed or explicit weights): plain
data that saves to JSON (the architecture) and ``.npz`` (the weights) — never Keras files.
``Client.dense(...)`` gives a :class:`DenseNetwork`, used like a Keras model::

    net = lc.dense(4, [Dense(64, "relu"), Dense(32, "relu"), Dense(1, "sigmoid")], seed=0)
    print(net.summary())                  # the table model.summary() prints
    net.predict([[1, 2, 3, 4]])           # numpy (1, 1)
    fit = net.train(x, y, loss="binary_crossentropy", epochs=20, metrics=["accuracy"])
    fit.plot()                            # loss per epoch; net now holds the trained weights

and the endpoints behind it are methods of both clients: ``dense_summary``, ``dense_weights``,
``dense_predict`` and ``dense_train`` (``POST /v1/nn/dense/...``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict, Unpack

import httpx
import numpy as np
from numpy.typing import ArrayLike

from labcrunch._arrays import NPZ_MEDIA_TYPE, array, binary_wanted, from_npz, to_npz
from labcrunch._base import Call, endpoint, json_answer
from labcrunch._repr import ShortRepr
from labcrunch._types import Backend, DType

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from labcrunch._client import AsyncClient, Client

#: Layer activations: the one-argument functions of the service's language (``gelu`` is the exact
#: erf GELU, ``swish`` = ``silu`` = x·sigmoid(x)), ``linear`` (none) and ``softmax`` over the
#: layer's units (over one unit it is the constant 1).
Activation = Literal[
    "linear", "relu", "elu", "gelu", "selu", "swish", "silu", "softplus", "tanh", "sigmoid",
    "softmax", "abs", "arccos", "arccosh", "arcsin", "arcsinh", "arctan", "arctanh", "cbrt", "ceil",
    "cos", "cosh", "erf", "erfc", "exp", "expm1", "floor", "log", "log10", "log1p", "log2", "sign",
    "sin", "sinh", "sqrt", "square", "tan"]

#: Keras' losses: mse, mae, binary and categorical cross-entropy (y one-hot), sparse categorical
#: cross-entropy (y class labels).
Loss = Literal["mse", "mae", "binary_crossentropy", "categorical_crossentropy",
               "sparse_categorical_crossentropy"]

#: Also recorded per epoch: accuracy (binary or categorical, as the loss implies), mse, mae.
Metric = Literal["accuracy", "mse", "mae"]

#: The optimisers of ``Client.minimize`` that step with a learning rate.
TrainingOptimizer = Literal["sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad"]

#: One layer's weights: kernel (inputs of the layer, units) and bias (units,) or None.
LayerWeights = tuple[np.ndarray, np.ndarray | None]


@dataclass(frozen=True)
class Dense:
    """``keras.layers.Dense(units, activation, use_bias)``: activation(x @ kernel + bias)."""

    units: int
    activation: Activation = "linear"
    use_bias: bool = True


def _layer(layer: Dense | tuple[int, str] | int) -> Dense:
    if isinstance(layer, Dense):
        return layer
    if isinstance(layer, int):
        return Dense(layer)
    units, activation = layer
    return Dense(int(units), activation)  # type: ignore[arg-type]


@dataclass(frozen=True, repr=False)
class Network(ShortRepr):
    """A dense network: ``inputs`` features, its layers, and a ``seed`` for Keras-style initial
    weights (Glorot-uniform kernels, zero biases) or explicit ``weights``. Equality compares the
    architecture and seed, not the weights.

    Example:
        >>> net = Network.of(4, [(64, "relu"), (32, "relu"), (1, "softmax")])
        >>> net.layers[0]
        Dense(units=64, activation='relu', use_bias=True)
        >>> Network.from_json(net.to_json()) == net
        True
    """

    inputs: int
    layers: tuple[Dense, ...]
    seed: int | None = None
    weights: tuple[LayerWeights, ...] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, inputs: int, layers: Sequence[Dense | tuple[int, str] | int], *,
           seed: int | None = None, weights: Sequence[LayerWeights] | None = None) -> Network:
        """A network from layers given as :class:`Dense`, ``(units, activation)`` or ``units``."""
        return cls(int(inputs), tuple(_layer(layer) for layer in layers), seed,
                   None if weights is None else _weights(weights))

    def with_weights(self, weights: Sequence[LayerWeights]) -> Network:
        """The same architecture with these weights (one (kernel, bias) per layer)."""
        return replace(self, seed=None, weights=_weights(weights))

    def to_json(self, *, weights: bool = False) -> dict[str, Any]:
        """The spec the server reads (with the weights as lists when ``weights``)."""
        spec: dict[str, Any] = {"inputs": self.inputs, "layers": [
            {"units": layer.units, "activation": layer.activation, "use_bias": layer.use_bias}
            for layer in self.layers]}
        if weights and self.weights is not None:
            spec["weights"] = [{"kernel": k.tolist(), "bias": None if b is None else b.tolist()}
                               for k, b in self.weights]
        elif self.seed is not None:
            spec["seed"] = self.seed
        return spec

    @classmethod
    def from_json(cls, spec: Mapping[str, Any]) -> Network:
        """A network from its spec (``to_json``'s, or the server's): weights as lists are read."""
        weights = spec.get("weights")
        return cls.of(spec["inputs"], [Dense(int(layer["units"]), layer.get("activation", "linear"),
                                             bool(layer.get("use_bias", True)))
                                       for layer in spec["layers"]],
                      seed=spec.get("seed"),
                      weights=None if weights is None else [
                          (w["kernel"], w.get("bias")) for w in weights])

    def weight_arrays(self) -> dict[str, np.ndarray]:
        """The weights as the server's .npz members: ``kernel_0``, ``bias_0``, ``kernel_1``, ..."""
        if self.weights is None:
            raise ValueError("This network has no explicit weights (it has a seed); get them with "
                             "lc.dense_weights(network) or DenseNetwork.get_weights().")
        arrays = {}
        for i, (kernel, bias) in enumerate(self.weights):
            arrays[f"kernel_{i}"] = kernel
            if bias is not None:
                arrays[f"bias_{i}"] = bias
        return arrays

    def save_weights(self, path: str | Path) -> Path:
        """Write the weights to ``path`` as .npz (members ``kernel_<i>``, ``bias_<i>``)."""
        path = Path(path)
        path.write_bytes(to_npz(self.weight_arrays()))
        return path

    def load_weights(self, path: str | Path) -> Network:
        """This architecture with the weights of an .npz written by :meth:`save_weights` (read
        without pickles)."""
        arrays = from_npz(Path(path).read_bytes())
        return self.with_weights([(arrays[f"kernel_{i}"], arrays.get(f"bias_{i}"))
                                  for i in range(len(self.layers))])

    @property
    def parameter_count(self) -> int:
        """Weights and biases: Keras' ``count_params()``."""
        fan_in, total = self.inputs, 0
        for layer in self.layers:
            total += fan_in * layer.units + (layer.units if layer.use_bias else 0)
            fan_in = layer.units
        return total


def _weights(weights: Sequence[tuple[ArrayLike, ArrayLike | None]]) -> tuple[LayerWeights, ...]:
    return tuple((np.asarray(k, dtype=np.float64), None if b is None else np.asarray(b, np.float64))
                 for k, b in weights)


def _weights_from_json(body: Sequence[Mapping[str, Any]]) -> list[LayerWeights]:
    return [(array(w["kernel"]), None if w.get("bias") is None else array(w["bias"])) for w in body]


def _weights_from_npz(arrays: Mapping[str, np.ndarray]) -> list[LayerWeights]:
    count = sum(1 for name in arrays if name.startswith("kernel_"))
    return [(arrays[f"kernel_{i}"], arrays.get(f"bias_{i}")) for i in range(count)]


# --- results ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class LayerSummary:
    """One row of ``model.summary()``."""

    name: str
    units: int
    activation: str
    use_bias: bool
    output_shape: tuple[int | None, ...]
    parameters: int


@dataclass(frozen=True, repr=False)
class DenseSummary(ShortRepr):
    """What ``model.summary()`` shows: ``print()`` it for Keras' table.

    Attributes:
        inputs: Features per sample.
        layers: Name, output shape and parameter count of each layer.
        total_parameters: Keras' ``count_params()``; all trainable.
        warnings: Designs that cannot work (softmax over one unit, ...).
    """

    inputs: int
    layers: list[LayerSummary]
    total_parameters: int
    trainable_parameters: int
    non_trainable_parameters: int
    warnings: list[str]

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> DenseSummary:
        return cls(inputs=int(body["inputs"]),
                   layers=[LayerSummary(name=layer["name"], units=int(layer["units"]),
                                        activation=layer["activation"],
                                        use_bias=bool(layer["use_bias"]),
                                        output_shape=tuple(layer["output_shape"]),
                                        parameters=int(layer["parameters"]))
                           for layer in body["layers"]],
                   total_parameters=int(body["total_parameters"]),
                   trainable_parameters=int(body["trainable_parameters"]),
                   non_trainable_parameters=int(body["non_trainable_parameters"]),
                   warnings=list(body["warnings"]))

    def __str__(self) -> str:
        rows = [("Layer (type)", "Output Shape", "Param #", "Activation")]
        rows += [(f"{layer.name} (Dense)", str(layer.output_shape),
                  f"{layer.parameters:,}", layer.activation) for layer in self.layers]
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                 for row in rows]
        rule = "-" * max(len(line) for line in lines)
        lines = [lines[0], rule, *lines[1:], rule,
                 f"Total params: {self.total_parameters:,}",
                 f"Trainable params: {self.trainable_parameters:,}",
                 f"Non-trainable params: {self.non_trainable_parameters:,}"]
        return "\n".join(lines + [f"Warning: {w}" for w in self.warnings])


@dataclass(frozen=True, repr=False)
class DensePrediction(ShortRepr):
    """A network's outputs for a batch, (rows, outputs), and with ``jacobian`` ∂outputs/∂inputs
    per row, (rows, outputs, inputs)."""

    outputs: np.ndarray = field(repr=False)
    jacobian: np.ndarray | None = field(repr=False)
    warnings: list[str]
    backend: str
    dtype: str
    device: str
    elapsed_ms: float

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> DensePrediction:
        jacobian = body.get("jacobian")
        return cls(outputs=array(body["outputs"]),
                   jacobian=None if jacobian is None else array(jacobian),
                   warnings=list(body["warnings"]), backend=body["backend"], dtype=body["dtype"],
                   device=body["device"], elapsed_ms=float(body["elapsed_ms"]))

    @classmethod
    def from_npz(cls, arrays: Mapping[str, np.ndarray], *, backend: str, dtype: str) -> DensePrediction:
        """From the .npz answer (``outputs``, ``jacobian``, ``warnings``, ``device``,
        ``elapsed_ms``); ``backend`` and ``dtype`` are the request's."""
        return cls(outputs=arrays["outputs"], jacobian=arrays.get("jacobian"),
                   warnings=[str(w) for w in arrays["warnings"]], backend=backend, dtype=dtype,
                   device=str(arrays["device"]), elapsed_ms=float(arrays["elapsed_ms"]))


@dataclass(frozen=True, repr=False)
class DenseTraining(ShortRepr):
    """A training's per-epoch history (as Keras' ``History.history``) and the trained network.

    Attributes:
        history: ``loss`` and each metric per epoch, and ``val_`` ones with a validation split.
        weights: The trained (kernel, bias) of each layer, numpy arrays.
        network: The trained network (the request's architecture with ``weights``).
        epochs: Epochs run (fewer than asked when the loss ``diverged``).
        options: The optimiser's hyper-parameters, defaults filled in (JSON answers only).
        warnings: Designs that cannot work (softmax over one unit, sigmoid + mse on 0/1 data...).
    """

    history: dict[str, np.ndarray] = field(repr=False)
    weights: list[LayerWeights] = field(repr=False)
    network: Network = field(repr=False)
    epochs: int
    diverged: bool
    loss: str
    optimizer: str
    learning_rate: float
    options: dict[str, float | bool]
    training_samples: int
    validation_samples: int
    warnings: list[str]
    backend: str
    dtype: str
    device: str
    elapsed_ms: float

    @classmethod
    def from_json(cls, body: Mapping[str, Any], *, network: Network) -> DenseTraining:
        """From the JSON answer; ``network`` is the trained architecture's spec."""
        weights = _weights_from_json(body["weights"])
        return cls(history={k: array(v) for k, v in body["history"].items()}, weights=weights,
                   network=network.with_weights(weights), options=dict(body["options"]),
                   epochs=int(body["epochs"]), diverged=bool(body["diverged"]), loss=body["loss"],
                   optimizer=body["optimizer"], learning_rate=float(body["learning_rate"]),
                   training_samples=int(body["training_samples"]),
                   validation_samples=int(body["validation_samples"]),
                   warnings=list(body["warnings"]), backend=body["backend"], dtype=body["dtype"],
                   device=body["device"], elapsed_ms=float(body["elapsed_ms"]))

    @classmethod
    def from_npz(cls, arrays: Mapping[str, np.ndarray], *, network: Network, backend: str,
                 dtype: str) -> DenseTraining:
        """From the .npz answer (weights ``kernel_<i>``/``bias_<i>``, ``history_<name>``, ...)."""
        weights = _weights_from_npz(arrays)
        return cls(history={k.removeprefix("history_"): v for k, v in arrays.items()
                            if k.startswith("history_")},
                   weights=weights, network=network.with_weights(weights), options={},
                   epochs=int(arrays["epochs"]), diverged=bool(arrays["diverged"]),
                   loss=str(arrays["loss"]), optimizer=str(arrays["optimizer"]),
                   learning_rate=float(arrays["learning_rate"]),
                   training_samples=int(arrays["training_samples"]),
                   validation_samples=int(arrays["validation_samples"]),
                   warnings=[str(w) for w in arrays["warnings"]], backend=backend, dtype=dtype,
                   device=str(arrays["device"]), elapsed_ms=float(arrays["elapsed_ms"]))

    def __repr__(self) -> str:
        last = {k: round(float(v[-1]), 6) for k, v in self.history.items() if len(v)}
        return (f"DenseTraining(epochs={self.epochs}, diverged={self.diverged}, loss={self.loss!r}, "
                f"optimizer={self.optimizer!r}, last={last}, backend={self.backend!r})")

    def plot(self, ax: Axes | None = None, *, metric: str = "loss") -> Axes:
        """``metric`` per epoch, and its validation curve (see
        :func:`labcrunch.plot.training_history`); returns the Axes. Needs matplotlib."""
        from labcrunch import plot

        return plot.training_history(self, ax, metric=metric)


# --- endpoints --------------------------------------------------------------------------------

def _x(values: ArrayLike, network: Network) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 1 and x.shape[0] == network.inputs:
        raise ValueError(f"x is one sample of shape {x.shape}; a batch is a list of rows: "
                         f"[{x.tolist()}] (as Keras wants [[...]]).")
    return x


def _with_weights(network: Network) -> int:
    return network.parameter_count if network.weights is not None else 0


def _binary_request(path: str, network: Network, arrays: dict[str, np.ndarray],
                    params: dict[str, Any], parse: Any, timeout: float | None,
                    max_retries: int | None) -> Call[Any]:
    if network.weights is not None:
        arrays |= network.weight_arrays()
    params = {k: v for k, v in params.items() if v is not None}
    params["network"] = json.dumps(network.to_json())
    return Call("POST", path, parse, content=to_npz(arrays), params=params,
                headers={"Content-Type": NPZ_MEDIA_TYPE, "Accept": NPZ_MEDIA_TYPE},
                timeout=timeout, max_retries=max_retries)


class NnAPI:
    """The dense-network endpoints of :class:`labcrunch.Client` and :class:`labcrunch.AsyncClient`."""

    @endpoint
    def dense_summary(self, network: Network, *, timeout: float | None = None,
                      max_retries: int | None = None) -> Call[DenseSummary]:
        """Layers, output shapes and parameter counts, as ``model.summary()`` shows them
        (``POST /v1/nn/dense/summary``).

        Example:
            >>> seed = Network.of(4, [(64, "relu"), (32, "relu"), (1, "softmax")])
            >>> s = lc.dense_summary(seed)
            >>> [layer.parameters for layer in s.layers], s.total_parameters
            ([320, 2080, 33], 2433)
            >>> "softmax to 1 unit" in s.warnings[0]
            True

        Args:
            network: The network (its weights are not sent).
            timeout: Seconds to wait for the answer (default: the client's).
            max_retries: Retries of this call (default: the client's).

        Returns:
            DenseSummary: per layer name, output shape, parameters; totals; warnings.

        Raises:
            ValidationError: An unknown activation, units < 1 (422).
            RequestTooLargeError: More layers or parameters than the server allows (413).
        """
        return Call("POST", "/v1/nn/dense/summary", json_answer(DenseSummary.from_json),
                    json={"network": network.to_json()}, timeout=timeout, max_retries=max_retries)

    @endpoint
    def dense_weights(self, network: Network, *, binary: bool | None = None,
                      timeout: float | None = None,
                      max_retries: int | None = None) -> Call[list[LayerWeights]]:
        """The network's weights: drawn from its seed as Keras initialises Dense layers
        (Glorot-uniform kernels, zero biases), or its own ones (``POST /v1/nn/dense/weights``).

        Example:
            >>> weights = lc.dense_weights(Network.of(4, [(3, "relu")], seed=1))
            >>> weights[0][0].shape, weights[0][1]
            ((4, 3), array([0., 0., 0.]))
            >>> bool(abs(weights[0][0]).max() <= (6 / 7) ** 0.5)    # Glorot: ±√(6/(4+3))
            True

        Args:
            network: The network.
            binary: Receive the weights as .npz. By default networks of at least
                ``BINARY_THRESHOLD`` (10,000) parameters do.
            timeout: Seconds to wait for the answer (default: the client's).
            max_retries: Retries of this call (default: the client's).

        Returns:
            list[tuple[numpy.ndarray, numpy.ndarray | None]]: (kernel, bias) per layer.

        Raises:
            ValidationError: Weights of the wrong shape (422).
            RequestTooLargeError: More layers or parameters than the server allows (413).
        """
        body = {"network": network.to_json(weights=True)}
        if binary_wanted(binary, network.parameter_count):
            def read_npz(response: httpx.Response) -> list[LayerWeights]:
                return _weights_from_npz(from_npz(response.content))

            return Call("POST", "/v1/nn/dense/weights", read_npz, json=body,
                        headers={"Accept": NPZ_MEDIA_TYPE}, timeout=timeout, max_retries=max_retries)
        return Call("POST", "/v1/nn/dense/weights",
                    json_answer(lambda answer: _weights_from_json(answer["weights"])), json=body,
                    timeout=timeout, max_retries=max_retries)

    @endpoint
    def dense_predict(self, network: Network, x: ArrayLike, *, jacobian: bool = False,
                      backend: Backend | None = None, dtype: DType | None = None,
                      binary: bool | None = None, timeout: float | None = None,
                      max_retries: int | None = None) -> Call[DensePrediction]:
        """The network's outputs for a batch of inputs (``POST /v1/nn/dense/predict``), and
        with ``jacobian`` their derivatives in the inputs.

        Example:
            >>> seed = Network.of(4, [(64, "relu"), (32, "relu"), (1, "softmax")])
            >>> lc.dense_predict(seed, [[1, 2, 3, 4], [1, 2, 3, 4]]).outputs   # softmax of 1 unit
            array([[1.],
                   [1.]])
            >>> linear = Network.of(2, [Dense(1)], weights=[([[2.0], [3.0]], [1.0])])
            >>> r = lc.dense_predict(linear, [[1.0, 1.0]], jacobian=True)
            >>> r.outputs, r.jacobian
            (array([[6.]]), array([[[2., 3.]]]))

        Args:
            network: The network (seed or weights).
            x: A batch: rows of ``network.inputs`` numbers (one sample is ``[[1, 2, 3, 4]]``).
            jacobian: Also ∂outputs/∂inputs, shape (rows, outputs, inputs).
            backend: ``"jax"`` or ``"tensorflow"`` (Keras).
            dtype: ``"float64"`` (default) or ``"float32"``.
            binary: Send x (and the weights) as .npz and receive .npz. By default at least
                ``BINARY_THRESHOLD`` (10,000) numbers do.
            timeout: Seconds to wait for the answer (default: the client's).
            max_retries: Retries of this call (default: the client's).

        Returns:
            DensePrediction: outputs (and Jacobian) as numpy arrays, warnings.

        Raises:
            ValueError: ``x`` is one sample, not a batch.
            ValidationError: Rows of the wrong width, weights of the wrong shape (422).
            RequestTooLargeError: A network or batch over the server's limits (413).
        """
        xs = _x(x, network)
        options = {"jacobian": jacobian, "backend": backend, "dtype": dtype}
        if binary_wanted(binary, xs.size + _with_weights(network)):
            def read_npz(response: httpx.Response) -> DensePrediction:
                return DensePrediction.from_npz(from_npz(response.content),
                                                backend=backend or "jax", dtype=dtype or "float64")

            return _binary_request("/v1/nn/dense/predict", network, {"x": xs}, options, read_npz,
                                   timeout, max_retries)
        body = {"network": network.to_json(weights=True), "x": xs.tolist(),
                **{k: v for k, v in options.items() if v is not None}}
        return Call("POST", "/v1/nn/dense/predict", json_answer(DensePrediction.from_json),
                    json=body, timeout=timeout, max_retries=max_retries)

    @endpoint
    def dense_train(
        self,
        network: Network,
        x: ArrayLike,
        y: ArrayLike,
        *,
        loss: Loss | None = None,
        from_logits: bool | None = None,
        optimizer: TrainingOptimizer | None = None,
        learning_rate: float | None = None,
        options: Mapping[str, float | bool] | None = None,
        epochs: int | None = None,
        batch_size: int | None = None,
        validation_split: float | None = None,
        shuffle: bool | None = None,
        seed: int | None = None,
        metrics: Sequence[Metric] | None = None,
        backend: Backend | None = None,
        dtype: DType | None = None,
        binary: bool | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> Call[DenseTraining]:
        """Train the network on (x, y) as Keras' ``fit`` does (``POST /v1/nn/dense/train``).

        Options left None take the server's defaults (mse, adam at Keras' rate, 10 epochs,
        batches of 32, shuffled, no validation split, jax, float64).

        Example:
            >>> xor = Network.of(2, [(8, "tanh"), (1, "sigmoid")], seed=0)
            >>> fit = lc.dense_train(xor, [[0, 0], [0, 1], [1, 0], [1, 1]], [0, 1, 1, 0],
            ...                      loss="binary_crossentropy", learning_rate=0.05, epochs=300,
            ...                      batch_size=4, metrics=["accuracy"])
            >>> fit.history["accuracy"][-1], fit.history["loss"][-1] < 0.05
            (np.float64(1.0), np.True_)
            >>> lc.dense_predict(fit.network, [[0, 1], [1, 1]]).outputs.round()
            array([[1.],
                   [0.]])

        Args:
            network: The network to start from (seed or weights).
            x: Inputs: rows of ``network.inputs`` numbers.
            y: Targets: one row per sample, a number per output unit (1-D for one unit), or
                class labels for ``sparse_categorical_crossentropy``.
            loss: ``"mse"``, ``"mae"``, ``"binary_crossentropy"``, ``"categorical_crossentropy"``
                or ``"sparse_categorical_crossentropy"``.
            from_logits: The cross-entropy reads the outputs as logits (a sigmoid or softmax
                output layer hands its logits to the matching loss anyway, as in Keras).
            optimizer: An optimiser of :meth:`minimize` with a learning rate.
            learning_rate: Its step size (default: Keras').
            options: Its hyper-parameters (see :meth:`minimize_optimizers`).
            epochs: Passes over the training data.
            batch_size: Samples per minibatch.
            validation_split: The fraction held out for validation: the last rows, before any
                shuffling, as in Keras.
            shuffle: A fresh order of the training rows each epoch.
            seed: Seed of those orders.
            metrics: Also recorded per epoch: ``"accuracy"``, ``"mse"``, ``"mae"``.
            backend: ``"jax"`` (optax) or ``"tensorflow"`` (Keras' ``fit``).
            dtype: ``"float64"`` (default) or ``"float32"``.
            binary: Send x, y (and the weights) as .npz and receive .npz. By default at least
                ``BINARY_THRESHOLD`` (10,000) numbers do.
            timeout: Seconds to wait for the answer (default: the client's).
            max_retries: Retries of this call (default: the client's).

        Returns:
            DenseTraining: the history, the trained weights and network, warnings.

        Raises:
            ValidationError: Data of the wrong shape, an unknown option, a bad split (422).
            RequestTooLargeError: A network, data, epochs or steps over the server's limits (413).
        """
        xs, ys = _x(x, network), np.asarray(y, dtype=np.float64)
        settings = {"loss": loss, "from_logits": from_logits, "optimizer": optimizer,
                    "learning_rate": learning_rate, "epochs": epochs, "batch_size": batch_size,
                    "validation_split": validation_split, "shuffle": shuffle, "seed": seed,
                    "backend": backend, "dtype": dtype}
        if binary_wanted(binary, xs.size + ys.size + _with_weights(network)):
            def read_npz(response: httpx.Response) -> DenseTraining:
                return DenseTraining.from_npz(from_npz(response.content), network=network,
                                              backend=backend or "jax", dtype=dtype or "float64")

            params = settings | {"options": None if options is None else json.dumps(dict(options)),
                                 "metrics": None if metrics is None else list(metrics)}
            return _binary_request("/v1/nn/dense/train", network, {"x": xs, "y": ys}, params,
                                   read_npz, timeout, max_retries)

        def parse(response: httpx.Response) -> DenseTraining:
            return DenseTraining.from_json(response.json(), network=network)

        body = {"network": network.to_json(weights=True), "x": xs.tolist(), "y": ys.tolist(),
                **{k: v for k, v in settings.items() if v is not None}}
        if options is not None:
            body["options"] = dict(options)
        if metrics is not None:
            body["metrics"] = list(metrics)
        return Call("POST", "/v1/nn/dense/train", parse, json=body, timeout=timeout,
                    max_retries=max_retries)


# --- a network bound to a client, used like a Keras model ---------------------------------------

class PredictOptions(TypedDict, total=False):
    """Keyword arguments of :meth:`DenseNetwork.predict` (as :meth:`NnAPI.dense_predict`)."""

    backend: Backend
    dtype: DType
    binary: bool
    timeout: float
    max_retries: int


class TrainOptions(PredictOptions, total=False):
    """Keyword arguments of :meth:`DenseNetwork.train` (as :meth:`NnAPI.dense_train`)."""

    loss: Loss
    from_logits: bool
    optimizer: TrainingOptimizer
    learning_rate: float
    options: Mapping[str, float | bool]
    epochs: int
    batch_size: int
    validation_split: float
    shuffle: bool
    seed: int
    metrics: Sequence[Metric]


class DenseNetwork:
    """A network on a :class:`labcrunch.Client`'s server, used like a Keras model: ``train``
    replaces its weights with the trained ones, as ``model.fit`` does.

    Attributes:
        network: The current :class:`Network` (spec and weights or seed).
    """

    def __init__(self, client: Client, network: Network) -> None:
        self.client, self.network = client, network

    def __repr__(self) -> str:
        return f"DenseNetwork({self.network!r})"

    def summary(self) -> DenseSummary:
        """See :meth:`NnAPI.dense_summary`; ``print()`` it for Keras' table."""
        return self.client.dense_summary(self.network)

    def get_weights(self) -> list[LayerWeights]:
        """(kernel, bias) per layer, numpy (asks the server when they come from a seed)."""
        if self.network.weights is not None:
            return list(self.network.weights)
        return self.client.dense_weights(self.network)

    def predict(self, x: ArrayLike, **options: Unpack[PredictOptions]) -> np.ndarray:
        """The outputs, (rows, outputs); ``options`` as :meth:`NnAPI.dense_predict` takes them."""
        return self.client.dense_predict(self.network, x, **options).outputs

    def jacobian(self, x: ArrayLike, **options: Unpack[PredictOptions]) -> np.ndarray:
        """∂outputs/∂inputs per row, (rows, outputs, inputs)."""
        result = self.client.dense_predict(self.network, x, jacobian=True, **options)
        assert result.jacobian is not None
        return result.jacobian

    def train(self, x: ArrayLike, y: ArrayLike, **options: Unpack[TrainOptions]) -> DenseTraining:
        """Train from the current weights (:meth:`NnAPI.dense_train` takes the ``options``);
        the network then holds the trained weights."""
        result = self.client.dense_train(self.network, x, y, **options)
        self.network = result.network
        return result

    def save_weights(self, path: str | Path) -> Path:
        """Write the current weights as .npz (``kernel_<i>``, ``bias_<i>``)."""
        return self.network.with_weights(self.get_weights()).save_weights(path)


class AsyncDenseNetwork:
    """:class:`DenseNetwork` on a :class:`labcrunch.AsyncClient`: the same methods, awaited."""

    def __init__(self, client: AsyncClient, network: Network) -> None:
        self.client, self.network = client, network

    def __repr__(self) -> str:
        return f"AsyncDenseNetwork({self.network!r})"

    async def summary(self) -> DenseSummary:
        return await self.client.dense_summary(self.network)

    async def get_weights(self) -> list[LayerWeights]:
        if self.network.weights is not None:
            return list(self.network.weights)
        return await self.client.dense_weights(self.network)

    async def predict(self, x: ArrayLike, **options: Unpack[PredictOptions]) -> np.ndarray:
        return (await self.client.dense_predict(self.network, x, **options)).outputs

    async def jacobian(self, x: ArrayLike, **options: Unpack[PredictOptions]) -> np.ndarray:
        result = await self.client.dense_predict(self.network, x, jacobian=True, **options)
        assert result.jacobian is not None
        return result.jacobian

    async def train(self, x: ArrayLike, y: ArrayLike, **options: Unpack[TrainOptions]) -> DenseTraining:
        result = await self.client.dense_train(self.network, x, y, **options)
        self.network = result.network
        return result


def _network(inputs: int | Network, layers: Sequence[Dense | tuple[int, str] | int] | None,
             seed: int | None, weights: Sequence[LayerWeights] | None) -> Network:
    if isinstance(inputs, Network):
        if layers is not None or seed is not None or weights is not None:
            raise TypeError("dense(network) takes no layers, seed or weights besides the network")
        return inputs
    if layers is None:
        raise TypeError("dense(inputs, layers) needs the layers")
    return Network.of(inputs, layers, seed=seed, weights=weights)


class DenseAPI:
    """``Client.dense``: a :class:`DenseNetwork` bound to the client."""

    def dense(self, inputs: int | Network, layers: Sequence[Dense | tuple[int, str] | int] | None = None,
              *, seed: int | None = None,
              weights: Sequence[LayerWeights] | None = None) -> DenseNetwork:
        """A dense network on this server, used like a Keras model (no request is made yet).

        Example:
            >>> net = lc.dense(4, [Dense(64, "relu"), Dense(32, "relu"), Dense(1, "softmax")])
            >>> print(net.summary())                               # doctest: +ELLIPSIS
            Layer (type)     Output Shape  Param #  Activation
            --------------------------------------------------
            dense (Dense)    (None, 64)    320      relu
            dense_1 (Dense)  (None, 32)    2,080    relu
            dense_2 (Dense)  (None, 1)     33       softmax
            --------------------------------------------------
            Total params: 2,433
            Trainable params: 2,433
            Non-trainable params: 0
            Warning: Layer 2 (dense_2) applies softmax to 1 unit: ...
            >>> net.predict([[1, 2, 3, 4]])
            array([[1.]])

        Args:
            inputs: Features per sample, or a whole :class:`Network`.
            layers: :class:`Dense` layers, ``(units, activation)`` pairs or unit counts.
            seed: Seed of the initial weights (Glorot-uniform kernels, zero biases).
            weights: Explicit (kernel, bias) per layer instead.

        Returns:
            DenseNetwork: with ``summary()``, ``predict(x)``, ``jacobian(x)``, ``train(x, y)``,
            ``get_weights()``, ``save_weights(path)``.
        """
        return DenseNetwork(self, _network(inputs, layers, seed, weights))  # type: ignore[arg-type]


class AsyncDenseAPI:
    """``AsyncClient.dense``: an :class:`AsyncDenseNetwork` bound to the client."""

    def dense(self, inputs: int | Network, layers: Sequence[Dense | tuple[int, str] | int] | None = None,
              *, seed: int | None = None,
              weights: Sequence[LayerWeights] | None = None) -> AsyncDenseNetwork:
        """As :meth:`DenseAPI.dense`, for an :class:`labcrunch.AsyncClient` (methods awaited)."""
        return AsyncDenseNetwork(self, _network(inputs, layers, seed, weights))  # type: ignore[arg-type]

