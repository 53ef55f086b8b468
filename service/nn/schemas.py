"""Request and response models of /v1/nn/dense (pydantic; the OpenAPI document is made from them).

JSON bodies are read strictly (``true`` or ``"0.5"`` is no number). Beside a binary body (.npy
of ``x``, or .npz of ``x``, ``y`` and weights) the options are query parameters
(:class:`PredictQuery`, :class:`TrainQuery`) and the network spec is one of them, as JSON text.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Json, model_validator
from pydantic.fields import FieldInfo

from labcrunch_service import encoding
from labcrunch_service.errors import InvalidInput
from labcrunch_service.minimize import optimizers
from labcrunch_service.nn.architecture import (
    ACTIVATIONS,
    Architecture,
    Layer,
    Network,
    checked_weights,
    weights_from_arrays,
)
from labcrunch_service.nn.data import LOSSES, METRICS
from labcrunch_service.schemas import Boolean, Integer, Number, binary_body_options, integer

FiniteFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Activation = Literal[ACTIVATIONS]  # type: ignore[valid-type]
LossName = Literal[LOSSES]  # type: ignore[valid-type]
MetricName = Literal[METRICS]  # type: ignore[valid-type]
#: Minibatch training takes the optimizers of /v1/minimize that step with a learning rate.
TRAINING_OPTIMIZERS = tuple(name for name, o in optimizers.OPTIMIZERS.items()
                            if o.default_learning_rate is not None)
OptimizerName = Literal[TRAINING_OPTIMIZERS]  # type: ignore[valid-type]
Backend = Literal["jax", "tensorflow"]
DType = Literal["float32", "float64"]
_STRICT = ConfigDict(extra="forbid", strict=True)

SEED_NETWORK = {"inputs": 4, "layers": [{"units": 64, "activation": "relu"},
                                        {"units": 32, "activation": "relu"},
                                        {"units": 1, "activation": "softmax"}]}


class DenseLayer(BaseModel):
    """``keras.layers.Dense(units, activation, use_bias)``."""

    model_config = _STRICT
    units: Integer = Field(ge=1, description="Neurons of the layer: its output width.")
    activation: Activation = Field(
        "linear", description="Applied elementwise to x·kernel + bias; the one-argument functions "
        "of the /v1/gradient language with their definitions there (gelu is the exact erf GELU, "
        "swish = silu = x·sigmoid(x)), `linear` (none, Keras' default) and `softmax` over the "
        "layer's units.")
    use_bias: Boolean = Field(True, description="Whether the layer adds a bias vector.")


class LayerWeights(BaseModel):
    model_config = _STRICT
    kernel: list[list[FiniteFloat]] = Field(description="Shape (inputs of the layer, units): the "
                                            "layer computes activation(x @ kernel + bias).")
    bias: list[FiniteFloat] | None = Field(None, description="Shape (units,); null or absent "
                                           "for a layer with use_bias false.")


class NetworkSpec(BaseModel):
    """A dense network: inputs, layers, and a seed or explicit weights. Our own safe subset of a
    Keras model: Keras' model JSON, HDF5 and .keras files are never read (they can carry code)."""

    model_config = ConfigDict(extra="forbid", strict=True,
                              json_schema_extra={"examples": [SEED_NETWORK]})
    inputs: Integer = Field(ge=1, description="Features per sample (Keras' `Input(shape=(inputs,))`).")
    layers: list[DenseLayer] = Field(min_length=1, description="The layers, input to output "
                                     "(limits.max_network_layers, max_network_parameters).")
    seed: integer(ge=0, le=2**53) | None = Field(None, description="Seed of the initial weights: "
                             "Glorot-uniform kernels and zero biases, as Keras initialises a Dense "
                             "layer (numpy's generator: the same distribution, not Keras' numbers). "
                             "Default 0 when no weights are given.")
    weights: list[LayerWeights] | None = Field(
        None, description="Explicit weights, one {kernel, bias} per layer (shapes checked). With a "
        ".npz body they travel as members kernel_0, bias_0, kernel_1, ... instead.")

    @model_validator(mode="after")
    def _seed_or_weights(self) -> NetworkSpec:
        if self.seed is not None and self.weights is not None:
            raise ValueError("give a seed or weights, not both")
        return self

    def architecture(self) -> Architecture:
        return Architecture(self.inputs, tuple(Layer(layer.units, layer.activation, layer.use_bias)
                                               for layer in self.layers))

    def network(self, arrays: dict[str, Any] | None = None) -> Network:
        """The domain's network, its weights checked against the architecture (422 naming the
        layer): the spec's own, or .npz members ``kernel_<i>``/``bias_<i>`` from ``arrays``."""
        architecture = self.architecture()
        from_arrays = weights_from_arrays(architecture, arrays or {})
        if from_arrays is not None and (self.weights is not None or self.seed is not None):
            raise InvalidInput("The .npz holds weights: give no weights or seed in the network spec.",
                               errors=[{"loc": ["network"], "msg": "weights given twice",
                                        "type": "extra"}])
        weights = from_arrays if self.weights is None else checked_weights(
            architecture, [(w.kernel, w.bias) for w in self.weights])
        return Network(architecture, seed=self.seed or 0, weights=weights)


class NetworkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"network": SEED_NETWORK}]})
    network: NetworkSpec


def _fields(model: type[BaseModel]) -> dict[str, tuple[Any, FieldInfo]]:
    return {name: (field.annotation, field) for name, field in model.model_fields.items()}


class PredictOptions(BaseModel):
    """How to predict; with a binary body these are query parameters."""

    model_config = ConfigDict(extra="forbid")
    jacobian: Boolean = Field(False, description="Also answer ∂outputs/∂inputs per sample: shape "
                           "(rows, outputs, inputs).")
    backend: Backend = Field("jax", description="jax (a compiled JAX forward pass) or tensorflow "
                             "(a Keras model with these weights).")
    dtype: DType = Field("float64", description="Precision of the computation.")


class PredictRequest(PredictOptions):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [
        {"network": SEED_NETWORK, "x": [[1, 2, 3, 4], [1, 2, 3, 4]]}]})
    network: NetworkSpec
    x: list[list[FiniteFloat]] = Field(description="A batch of inputs: a list of rows, each of "
                                       "`inputs` numbers (one sample is [[1, 2, 3, 4]]).")


_NETWORK_TEXT = Field(None, description="The network spec as JSON text (required with a binary "
                      "body; its weights may come as .npz members instead).")
PredictQuery = binary_body_options(
    "PredictQuery", {**_fields(PredictOptions), "network": (Json[NetworkSpec] | None, _NETWORK_TEXT)},
    "application/x-npy or application/x-npz",
    doc="Predict options beside a binary body (.npy of x, or .npz of x and weights).")


class TrainingOptions(BaseModel):
    """How to train; with an .npz body these are query parameters."""

    model_config = ConfigDict(extra="forbid")
    loss: LossName = Field("mse", description="Keras' losses: mse and mae (mean over the output "
                           "units), binary_crossentropy, categorical_crossentropy (y one-hot), "
                           "sparse_categorical_crossentropy (y class labels).")
    from_logits: Boolean = Field(False, description="The cross-entropy reads the outputs as logits. "
                              "A sigmoid output with binary_crossentropy, or a softmax output with "
                              "categorical_crossentropy, hands its logits to the loss anyway, as "
                              "Keras does; other outputs are clipped to [1e-7, 1 - 1e-7].")
    optimizer: OptimizerName = Field("adam", description="An optimizer of /v1/minimize "
                                     "(`GET /v1/minimize/optimizers`), with the same options.")
    learning_rate: FiniteFloat | None = Field(None, gt=0,
                                        description="Default: the optimizer's (Keras').")
    options: dict[str, FiniteFloat | Boolean] = Field(default_factory=dict, description="The optimizer's "
                                             "hyper-parameters, as for /v1/minimize.")
    epochs: Integer = Field(10, ge=1, description="Passes over the training data "
                        "(limits.max_training_epochs).")
    batch_size: Integer = Field(32, ge=1, description="Samples per minibatch; the last one of an epoch "
                            "may be shorter (limits.max_training_batch_size).")
    validation_split: FiniteFloat = Field(0.0, ge=0, lt=1, description="The fraction of the data held "
                                    "out for validation: the *last* rows, taken before any "
                                    "shuffling, as Keras does.")
    shuffle: Boolean = Field(True, description="Visit the training rows in a fresh order each epoch.")
    seed: Integer = Field(0, ge=0, le=2**63 - 1, description="Seed of the epochs' orders (numpy), the "
                      "same on both backends.")
    metrics: list[MetricName] = Field(default_factory=list, description="Also recorded per epoch "
                                      "(and `val_` ones): accuracy (binary: output > 0.5, or "
                                      "logit > 0; categorical: argmax), mse, mae.")
    backend: Backend = Field("jax", description="jax (optax on a compiled JAX network) or "
                             "tensorflow (Keras' `fit`).")
    dtype: DType = Field("float64", description="Precision of the computation.")


class TrainRequest(TrainingOptions):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [
        {"network": {"inputs": 2, "layers": [{"units": 8, "activation": "tanh"},
                                             {"units": 1, "activation": "sigmoid"}]},
         "x": [[0, 0], [0, 1], [1, 0], [1, 1]], "y": [0, 1, 1, 0],
         "loss": "binary_crossentropy", "optimizer": "adam", "learning_rate": 0.05,
         "epochs": 200, "batch_size": 4, "metrics": ["accuracy"]}]})
    network: NetworkSpec
    x: list[list[FiniteFloat]] = Field(description="Inputs: a list of rows of `inputs` numbers.")
    y: list[list[FiniteFloat]] | list[FiniteFloat] = Field(
        description="Targets: a row per sample with one number per output unit (a plain list for "
        "one unit), or class labels for sparse_categorical_crossentropy.")


TrainQuery = binary_body_options(
    "TrainQuery", {**_fields(TrainingOptions), "network": (Json[NetworkSpec] | None, _NETWORK_TEXT),
                   "options": (Json[dict[str, float | bool]], Field(
                       default_factory=dict, description="The optimizer's hyper-parameters as JSON text."))},
    "application/x-npz",
    doc="Training options beside an .npz body (members x, y and optionally the weights).")


# --- answers ----------------------------------------------------------------------------------

class LayerSummary(BaseModel):
    name: str = Field(description="Keras' name in a fresh session: dense, dense_1, ...")
    type: Literal["Dense"]
    units: int
    activation: str
    use_bias: bool
    output_shape: list[int | None] = Field(description="[null, units]: null is the batch axis.")
    parameters: int = Field(description="inputs·units (+ units with a bias): Keras' `Param #`.")


class SummaryResponse(BaseModel):
    inputs: int
    input_shape: list[int | None]
    layers: list[LayerSummary]
    total_parameters: int = Field(description="Keras' `count_params()`.")
    trainable_parameters: int
    non_trainable_parameters: int
    warnings: list[str] = Field(description="Designs that cannot work (softmax over one unit, "
                                "...); never errors.")


class WeightsAnswer(BaseModel):
    kernel: list[list[Number]]
    bias: list[Number] | None


class WeightsResponse(BaseModel):
    weights: list[WeightsAnswer] = Field(description="One {kernel, bias} per layer.")
    total_parameters: int
    elapsed_ms: float


class PredictResponse(BaseModel):
    outputs: list[list[Number]] = Field(description="One row of `units` of the last layer per "
                                        "input row.")
    jacobian: list[list[list[Number]]] | None = Field(
        None, description="With `jacobian`: ∂outputs[i]/∂inputs[j] per sample, (rows, outputs, "
        "inputs).")
    warnings: list[str]
    backend: str
    dtype: str
    device: str
    elapsed_ms: float


class TrainResponse(BaseModel):
    history: dict[str, list[Number]] = Field(
        description="Per epoch, as Keras' History: `loss` (the epoch's minibatch losses averaged, "
        "weighted by batch size), the metrics, and with a validation split `val_loss` and "
        "`val_<metric>` at the epoch's end.")
    epochs: int = Field(description="Epochs run: fewer than asked when the loss diverged.")
    diverged: bool = Field(description="The loss became non-finite; training stopped after that "
                           "epoch.")
    weights: list[WeightsAnswer] = Field(description="The trained weights.")
    loss: str
    optimizer: str
    learning_rate: float
    options: dict[str, float | bool] = Field(description="The optimizer's hyper-parameters, "
                                             "defaults filled in.")
    training_samples: int
    validation_samples: int
    warnings: list[str]
    backend: str
    dtype: str
    device: str
    elapsed_ms: float


def _binary(description: str) -> dict[str, Any]:
    return {"schema": {"type": "string", "format": "binary", "description": description}}


def request_body(model: type[BaseModel], binary: dict[str, str]) -> dict[str, Any]:
    """The OpenAPI request body of a route that reads JSON or binary bodies itself. The JSON
    schema's nested models point at the document's components (the summary route declares them)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    return {"required": True, "content": {
        "application/json": {"schema": schema},
        **{media_type: _binary(text) for media_type, text in binary.items()}}}


PREDICT_BODY = request_body(PredictRequest, {
    encoding.NPY_MEDIA_TYPE: "x as one .npy float array (rows, inputs); options as query parameters.",
    encoding.NPZ_MEDIA_TYPE: "An .npz with x and optionally the weights (kernel_0, bias_0, ...); "
                             "options as query parameters."})
TRAIN_BODY = request_body(TrainRequest, {
    encoding.NPZ_MEDIA_TYPE: "An .npz with x, y and optionally the weights (kernel_0, bias_0, "
                             "...); options as query parameters."})
