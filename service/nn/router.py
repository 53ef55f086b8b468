"""HTTP routes for /v1/nn/dense: validate, check limits, call the domain function through the
runner, encode.

``/summary`` is answered here (arithmetic on the spec: it never waits in the compute queue).
``/predict`` takes JSON, or ``x`` as an .npy body, or an .npz of ``x`` and the weights
(``kernel_0``, ``bias_0``, ...) with the network spec and options as query parameters; ``/train``
JSON or an .npz of ``x``, ``y`` and the weights. Answers are JSON, or .npz with ``Accept:
application/x-npz`` (weights as ``kernel_<i>``/``bias_<i>``, history as ``history_<name>``).
Domain errors name fields relative to the request; they are rooted here where the request
carried them (``body``, or ``query`` for the options beside a binary body).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from labcrunch_service import encoding
from labcrunch_service.compute import Task, Timed
from labcrunch_service.errors import InvalidInput, located
from labcrunch_service.http.bodies import JsonBodyRoute, json_or_binary, media_type
from labcrunch_service.http.deps import LimitsDep, RunnerDep
from labcrunch_service.http.problems import problem_responses
from labcrunch_service.http.responses import accepts, json_response, npz_response
from labcrunch_service.nn import checks
from labcrunch_service.nn.architecture import LayerWeights, weight_name
from labcrunch_service.nn.data import inputs_array, split_at, targets_array
from labcrunch_service.nn.design import network_warnings
from labcrunch_service.nn.schemas import (
    PREDICT_BODY,
    TRAIN_BODY,
    NetworkRequest,
    NetworkSpec,
    PredictQuery,
    PredictRequest,
    PredictResponse,
    SummaryResponse,
    TrainQuery,
    TrainRequest,
    TrainResponse,
    WeightsResponse,
)
from labcrunch_service.settings import Limits

if TYPE_CHECKING:
    from labcrunch_service.nn.dense import Prediction, Training

router = APIRouter(prefix="/v1/nn/dense", tags=["nn"], route_class=JsonBodyRoute)
#: Run once in every compute process at start-up (settings.warmup): compiles the hot path.
WARMUP = Task("labcrunch_service.nn.dense:warmup")

WEIGHTS = Task("labcrunch_service.nn.dense:network_weights")
PREDICT = Task("labcrunch_service.nn.dense:predict")
TRAIN = Task("labcrunch_service.nn.dense:train")

_INLINE_VALUES = 10_000  # data or answers with more numbers are converted off the event loop
_BINARY_ANSWER = {"content": {encoding.NPZ_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
                  "description": "JSON, or .npz when the request says `Accept: application/x-npz`."}


async def _off_loop(size: int, fn: Any, *args: Any) -> Any:
    """``fn(*args)``, in a worker thread when ``size`` numbers make it slow."""
    return await run_in_threadpool(fn, *args) if size > _INLINE_VALUES else fn(*args)


def _weights_payload(weights: list[LayerWeights]) -> list[dict[str, Any]]:
    return [{"kernel": kernel, "bias": bias} for kernel, bias in weights]


def _weights_arrays(weights: list[LayerWeights]) -> dict[str, np.ndarray]:
    arrays = {}
    for i, (kernel, bias) in enumerate(weights):
        arrays[weight_name(i, "kernel")] = kernel
        if bias is not None:
            arrays[weight_name(i, "bias")] = bias
    return arrays


def _timing_headers(timed: Timed[Any], device: str) -> dict[str, str]:
    return {"X-Elapsed-Ms": f"{timed.elapsed_ms:.3f}", "X-Device": device}


async def _binary_arrays(body: bytes, kind: str, limits: Limits) -> dict[str, np.ndarray]:
    """The arrays of a binary body: an .npy is ``x``; an .npz holds named arrays. Errors point
    into the body (``["body", "x"]``)."""
    def read() -> dict[str, np.ndarray]:
        if kind == encoding.NPY_MEDIA_TYPE:
            return {"x": encoding.read_npy(body, max_elements=limits.max_network_values, where="x",
                                           limit="max_network_values")}
        return encoding.read_npz(body, max_arrays=2 + 2 * limits.max_network_layers,
                                 max_elements=max(limits.max_network_values,
                                                  limits.max_network_parameters),
                                 max_total_bytes=limits.max_nn_body_bytes, total_limit="max_nn_body_bytes",
                                 arrays_limit="max_network_layers",
                                 elements_limit="max_network_values")

    try:
        return await run_in_threadpool(read)
    except InvalidInput as error:  # the readers name the array (or "body" for the archive)
        raise InvalidInput(error.detail, errors=[
            {**e, "loc": e["loc"] if e["loc"][:1] == ["body"] else ["body", *e["loc"]]}
            for e in error.errors or []]) from None


def _required(spec: NetworkSpec | None) -> NetworkSpec:
    if spec is None:
        raise InvalidInput("With a binary body the network spec is the query parameter `network` "
                           "(JSON text).", errors=[{"loc": ["query", "network"], "msg": "missing",
                                                    "type": "missing"}])
    return spec


def _array(arrays: dict[str, np.ndarray], name: str) -> np.ndarray:
    if name not in arrays:
        raise InvalidInput(f"The .npz lacks the array {name!r}.",
                           errors=[{"loc": ["body", name], "msg": "missing", "type": "missing"}])
    return arrays[name]


@contextmanager
def _rooted(query: PredictQuery | TrainQuery | None) -> Iterator[None]:
    """Root domain errors in the JSON body or, beside a binary body, in the query for the
    options and in the body for its arrays."""
    roots = None if query is None else dict.fromkeys(type(query).model_fields, "query")
    with located("body", roots):
        yield


@router.post("/summary", summary="Layers, output shapes and parameter counts of a network",
             description="The numbers Keras' `model.summary()` prints: per layer its output "
             "shape and parameters, and the totals (2,433 for the seed notebook's network); "
             "`warnings` names designs that cannot work. Answered without queueing.",
             response_model=SummaryResponse, responses=problem_responses(401, 413, 422, 500))
async def summary_route(body: NetworkRequest, limits: LimitsDep) -> Response:
    architecture = body.network.architecture()
    checks.check_network(architecture, limits)
    with located("body"):
        await _off_loop(architecture.parameters, body.network.network)  # checks given weights
    return json_response(architecture.summary() | {"warnings": network_warnings(architecture)})


@router.post("/weights", summary="A network's weights: drawn from its seed, or the given ones",
             description="Glorot-uniform kernels and zero biases from the spec's `seed` (as Keras "
             "initialises Dense layers), or the spec's own weights checked. JSON, or .npz "
             "(`kernel_0`, `bias_0`, ...) with `Accept: application/x-npz`.",
             response_model=WeightsResponse,
             responses={**problem_responses(401, 413, 422, 429, 500, 503), 200: _BINARY_ANSWER})
async def weights_route(body: NetworkRequest, request: Request, runner: RunnerDep,
                        limits: LimitsDep) -> Response:
    checks.check_network(body.network.architecture(), limits)
    with located("body"):
        network = await _off_loop(body.network.architecture().parameters, body.network.network)
    timed = await runner.run(WEIGHTS, network, limits=limits)
    if accepts(request, encoding.NPZ_MEDIA_TYPE):
        return npz_response(_weights_arrays(timed.result) | {
            "elapsed_ms": np.float64(timed.elapsed_ms)}, headers=_timing_headers(timed, "cpu"))
    payload = {"weights": _weights_payload(timed.result),
               "total_parameters": network.architecture.parameters, "elapsed_ms": timed.elapsed_ms}
    return await _off_loop(network.architecture.parameters, json_response, payload)


def _prediction_answer(timed: Timed[Prediction], options: PredictQuery | PredictRequest,
                       binary: bool) -> Response:
    result, device = timed.result, timed.device(options.backend)
    if binary:
        arrays = {"outputs": result.outputs, "warnings": np.array(result.warnings, dtype=str),
                  "elapsed_ms": np.float64(timed.elapsed_ms), "device": np.array(device)}
        if result.jacobian is not None:
            arrays["jacobian"] = result.jacobian
        return npz_response(arrays, headers=_timing_headers(timed, device))
    return json_response({"outputs": result.outputs, "jacobian": result.jacobian,
                          "warnings": result.warnings, "backend": options.backend,
                          "dtype": options.dtype, "device": device, "elapsed_ms": timed.elapsed_ms})


@router.post("/predict", summary="A network's outputs for a batch of inputs (and their Jacobian)",
             description="`x` is a list of rows (one sample: `[[1, 2, 3, 4]]`). JSON; or `x` as an "
             ".npy body (`Content-Type: application/x-npy`), or an .npz with `x` and the weights "
             "(`application/x-npz`), the network spec (`network`, JSON text) and options as query "
             "parameters. The answer is JSON, or .npz with `Accept: application/x-npz`.",
             response_model=PredictResponse,
             responses={**problem_responses(401, 413, 415, 422, 429, 500, 503), 200: _BINARY_ANSWER},
             openapi_extra={"requestBody": PREDICT_BODY})
async def predict_route(request: Request, query: Annotated[PredictQuery, Query()],  # type: ignore[valid-type]
                        runner: RunnerDep, limits: LimitsDep) -> Response:
    kind = encoding.NPY_MEDIA_TYPE if media_type(request) == encoding.NPY_MEDIA_TYPE else \
        encoding.NPZ_MEDIA_TYPE
    content = await json_or_binary(request, PredictRequest, kind)
    binary = await _binary_arrays(content, kind, limits) if isinstance(content, bytes) else None
    options: PredictQuery | PredictRequest = query if binary is not None else content
    spec = _required(query.network) if binary is not None else content.network
    x = _array(binary, "x") if binary is not None else content.x
    with _rooted(query if binary is not None else None):
        architecture = spec.architecture()
        checks.check_predict(architecture, len(x), options.jacobian, limits)
        network = await _off_loop(architecture.parameters, spec.network, binary)
        x = await _off_loop(len(x) * architecture.inputs, inputs_array, x, architecture)
        timed = await runner.run(PREDICT, network, x, jacobian=options.jacobian,
                                 backend=options.backend, dtype=options.dtype, limits=limits)
    answer_binary = accepts(request, encoding.NPZ_MEDIA_TYPE)
    size = timed.result.outputs.size * (1 + architecture.inputs * options.jacobian)
    return await _off_loop(size, _prediction_answer, timed, options, answer_binary)


def _training_answer(timed: Timed[Training], options: TrainQuery | TrainRequest,
                     binary: bool) -> Response:
    result, device = timed.result, timed.device(options.backend)
    about = {"epochs": result.epochs, "diverged": result.diverged, "loss": result.loss,
             "optimizer": result.optimizer, "learning_rate": result.learning_rate,
             "training_samples": result.training_samples,
             "validation_samples": result.validation_samples}
    if binary:
        arrays = {**_weights_arrays(result.weights),
                  **{f"history_{name}": values for name, values in result.history.items()},
                  **{k: np.asarray(v) for k, v in about.items()},
                  "warnings": np.array(result.warnings, dtype=str),
                  "elapsed_ms": np.float64(timed.elapsed_ms), "device": np.array(device)}
        return npz_response(arrays, headers=_timing_headers(timed, device))
    return json_response({"history": result.history, **about,
                          "weights": _weights_payload(result.weights),
                          "options": result.hyper_parameters, "warnings": result.warnings,
                          "backend": options.backend, "dtype": options.dtype, "device": device,
                          "elapsed_ms": timed.elapsed_ms})


@router.post("/train", summary="Train a network on (x, y): Keras' fit, on JAX or Keras itself",
             description="Minibatch training with Keras' losses and the optimizers of "
             "/v1/minimize; answers the per-epoch history (loss, metrics, and `val_` ones with a "
             "validation split) and the trained weights. JSON, or an .npz with `x`, `y` and "
             "optionally the weights (`application/x-npz`), the network spec (`network`, JSON "
             "text) and options as query parameters; the answer is JSON, or .npz with `Accept: "
             "application/x-npz`.",
             response_model=TrainResponse,
             responses={**problem_responses(401, 413, 415, 422, 429, 500, 503), 200: _BINARY_ANSWER},
             openapi_extra={"requestBody": TRAIN_BODY})
async def train_route(request: Request, query: Annotated[TrainQuery, Query()],  # type: ignore[valid-type]
                      runner: RunnerDep, limits: LimitsDep) -> Response:
    content = await json_or_binary(request, TrainRequest, encoding.NPZ_MEDIA_TYPE)
    binary = await _binary_arrays(content, encoding.NPZ_MEDIA_TYPE, limits) \
        if isinstance(content, bytes) else None
    options: TrainQuery | TrainRequest = query if binary is not None else content
    spec = _required(query.network) if binary is not None else content.network
    x = _array(binary, "x") if binary is not None else content.x
    y = _array(binary, "y") if binary is not None else content.y
    with _rooted(query if binary is not None else None):
        architecture = spec.architecture()
        rows = len(x)
        training_rows = split_at(rows, options.validation_split)
        columns = 1 if options.loss == "sparse_categorical_crossentropy" else architecture.outputs
        checks.check_training(architecture, rows, columns, training_rows, epochs=options.epochs,
                              batch_size=options.batch_size, limits=limits)
        network = await _off_loop(architecture.parameters, spec.network, binary)
        size = rows * (architecture.inputs + columns)
        x = await _off_loop(size, inputs_array, x, architecture)
        y = await _off_loop(size, targets_array, y, architecture, options.loss, rows)
        settings = options.model_dump(exclude={"network", "x", "y"})
        timed = await runner.run(TRAIN, network, x, y, limits=limits, **settings)
    return await _off_loop(architecture.parameters, _training_answer, timed, options,
                           accepts(request, encoding.NPZ_MEDIA_TYPE))
