"""/v1/nn/dense over HTTP: binary bodies and answers, errors rooted where the request carried
them, limits refused before any work, and an OpenAPI document whose references resolve."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from labcrunch_service.settings import Limits
from tests.conftest import assert_problem, serving
from tests.helpers.nn_oracle import forward, network

SMALL = network(3, [(4, "tanh"), (2, "sigmoid", False)])
KERNELS = {"kernel_0": np.arange(12.0).reshape(3, 4) / 10, "bias_0": np.array([0.1, -0.1, 0.2, 0.0]),
           "kernel_1": np.ones((4, 2)) / 4}
WEIGHTS = [(KERNELS["kernel_0"], KERNELS["bias_0"]), (KERNELS["kernel_1"], None)]
X = np.array([[0.5, -1.0, 2.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])


def npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def post_binary(api, route, content, media_type="application/x-npz", accept=None, **params):
    headers = {"Content-Type": media_type} | ({"Accept": accept} if accept else {})
    return api.post(f"/v1/nn/dense/{route}", content=content, params=params, headers=headers)


def test_predict_with_weights_in_an_npz_body_and_an_npz_answer(api):
    r = post_binary(api, "predict", npz(x=X, **KERNELS), accept="application/x-npz",
                    network=json.dumps(SMALL), jacobian="true")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-npz" and "x-elapsed-ms" in r.headers
    answer = np.load(io.BytesIO(r.content), allow_pickle=False)
    np.testing.assert_allclose(answer["outputs"], forward(WEIGHTS, ["tanh", "sigmoid"], X),
                               rtol=1e-12)
    assert answer["jacobian"].shape == (3, 2, 3) and str(answer["device"]) == "cpu"


def test_predict_with_x_as_an_npy_body(api):
    buf = io.BytesIO()
    np.save(buf, X)
    spec = {**SMALL, "weights": [{"kernel": k.tolist(), "bias": None if b is None else b.tolist()}
                                 for k, b in WEIGHTS]}
    r = post_binary(api, "predict", buf.getvalue(), "application/x-npy", network=json.dumps(spec))
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["outputs"], forward(WEIGHTS, ["tanh", "sigmoid"], X),
                               rtol=1e-12)


def test_train_with_an_npz_body_answers_npz(api):
    y = (X[:, :2] > 0).astype(float)
    r = post_binary(api, "train", npz(x=X, y=y, **KERNELS), accept="application/x-npz",
                    network=json.dumps(SMALL), loss="binary_crossentropy", epochs=2, batch_size=2,
                    metrics=["accuracy", "mae"], optimizer="momentum", options='{"momentum": 0.5}')
    assert r.status_code == 200, r.text
    answer = np.load(io.BytesIO(r.content), allow_pickle=False)
    assert answer["history_loss"].shape == answer["history_mae"].shape == (2,)
    assert answer["kernel_0"].shape == (3, 4) and "bias_1" not in answer
    assert (int(answer["epochs"]), str(answer["optimizer"]), int(answer["training_samples"])) == \
        (2, "momentum", 3)
    # the same request as JSON answers the same numbers
    spec = {**SMALL, "weights": [{"kernel": k.tolist(), "bias": None if b is None else b.tolist()}
                                 for k, b in WEIGHTS]}
    body = api.post("/v1/nn/dense/train", json={
        "network": spec, "x": X.tolist(), "y": y.tolist(), "loss": "binary_crossentropy",
        "epochs": 2, "batch_size": 2, "metrics": ["accuracy", "mae"], "optimizer": "momentum",
        "options": {"momentum": 0.5}}).json()
    np.testing.assert_allclose(body["history"]["loss"], answer["history_loss"], rtol=1e-15)
    np.testing.assert_allclose(body["weights"][0]["kernel"], answer["kernel_0"], rtol=1e-15)
    assert body["options"] == {"momentum": 0.5}


BINARY_ERRORS = [  # (route, arrays, query parameters, where the 422 points)
    ("predict", {"x": X}, {}, ["query", "network"]),
    ("predict", {"y": X}, {"network": json.dumps(SMALL)}, ["body", "x"]),
    ("predict", {"x": X[:, :2]}, {"network": json.dumps(SMALL)}, ["body", "x"]),
    ("predict", {"x": X, "kernel_0": KERNELS["kernel_0"]}, {"network": json.dumps(SMALL)},
     ["body", "bias_0"]),
    ("predict", {"x": X, **KERNELS, "bias_1": np.ones(2)}, {"network": json.dumps(SMALL)},
     ["body", "bias_1"]),
    ("predict", {"x": X, **KERNELS, "kernel_1": np.ones((2, 4))}, {"network": json.dumps(SMALL)},
     ["body", "kernel_1"]),
    ("predict", {"x": X, **KERNELS}, {"network": json.dumps({**SMALL, "seed": 3})},
     ["query", "network"]),
    ("predict", {"x": X}, {"network": "{not json"}, ["query", "network"]),
    ("predict", {"x": X.astype(complex)}, {"network": json.dumps(SMALL)}, ["body", "x"]),
    ("train", {"x": X, "y": np.ones((3, 3))}, {"network": json.dumps(SMALL)}, ["body", "y"]),
    ("train", {"x": X, "y": np.ones((3, 2))}, {"network": json.dumps(SMALL), "options": '{"rho": 1}'},
     ["query", "options", "rho"]),
    ("train", {"x": X, "y": np.ones((3, 2))},
     {"network": json.dumps(SMALL), "validation_split": "0.9"}, ["query", "validation_split"]),
]


@pytest.mark.parametrize(("route", "arrays", "params", "loc"), BINARY_ERRORS)
def test_binary_request_errors_are_rooted_where_they_were_sent(api, route, arrays, params, loc):
    body = assert_problem(post_binary(api, route, npz(**arrays), **params), 422)
    assert any(error["loc"][:len(loc)] == loc for error in body["errors"]), body["errors"]


JSON_ERRORS = [  # (route, request, where the 422 points)
    ("predict", {"x": [[1.0, 2.0]]}, ["body", "x"]),
    ("predict", {"x": [1.0, 2.0, 3.0]}, ["body", "x", 0]),
    ("predict", {"x": [[1.0, 2.0, True]]}, ["body", "x", 0, 2]),
    ("train", {"x": X.tolist(), "y": [[1.0, 0.0]]}, ["body", "y"]),
    ("train", {"x": X.tolist(), "y": [0, 1, 2], "loss": "sparse_categorical_crossentropy"},
     ["body", "y", 2]),
    ("train", {"x": X.tolist(), "y": [[1.0, 0.0]] * 3, "validation_split": 0.9},
     ["body", "validation_split"]),
    ("train", {"x": X.tolist(), "y": [[1.0, 0.0]] * 3, "options": {"beta_3": 0.5}},
     ["body", "options", "beta_3"]),
    ("train", {"x": X.tolist(), "y": [[1.0, 0.0]] * 3, "optimizer": "lbfgs"}, ["body", "optimizer"]),
    ("train", {"x": X.tolist(), "y": [[1.0, 0.0]] * 3, "from_logits": True}, ["body", "from_logits"]),
    ("train", {"x": X.tolist(), "y": [[1.0, 0.0]] * 3, "metrics": ["mse"],
               "loss": "sparse_categorical_crossentropy"}, ["body", "y"]),
    ("train", {"x": X.tolist(), "y": [0, 1, 1], "metrics": ["mse"],
               "loss": "sparse_categorical_crossentropy"}, ["body", "metrics"]),
    ("train", {"x": X.tolist(), "y": [[1.0, 0.0]] * 3, "epochs": 0}, ["body", "epochs"]),
]


@pytest.mark.parametrize(("route", "request_body", "loc"), JSON_ERRORS)
def test_json_request_errors_name_the_field(api, route, request_body, loc):
    body = assert_problem(api.post(f"/v1/nn/dense/{route}",
                                   json={"network": {**SMALL, "seed": 0}, **request_body}), 422)
    assert any(error["loc"][:len(loc)] == loc for error in body["errors"]), body["errors"]


def test_over_large_work_is_refused_naming_the_limit():
    limits = Limits(max_network_parameters=100, max_network_layers=3, max_network_values=30,
                    max_network_activations=100, max_training_batch_size=16, max_training_epochs=5,
                    max_training_steps=12)
    wide = network(3, [(40, "relu")], seed=0)
    deep = network(1, [(1, "relu")] * 4, seed=0)
    ok, x = {**SMALL, "seed": 0}, [[0.0, 0.0, 0.0]]
    cases = [
        ("summary", {"network": wide}, "max_network_parameters"),
        ("weights", {"network": deep}, "max_network_layers"),
        ("predict", {"network": ok, "x": x * 11}, "max_network_values"),
        ("predict", {"network": ok, "x": x * 4, "jacobian": True}, "max_network_values"),
        ("train", {"network": ok, "x": x * 4, "y": [[0.0, 0.0]] * 4, "epochs": 6},
         "max_training_epochs"),
        ("train", {"network": ok, "x": x * 4, "y": [[0.0, 0.0]] * 4, "batch_size": 17,
                   "epochs": 1}, "max_training_batch_size"),
        ("train", {"network": ok, "x": x * 6, "y": [[0.0, 0.0]] * 6, "batch_size": 1,
                   "epochs": 3}, "max_training_steps"),
        ("train", {"network": network(3, [(18, "relu"), (1, "linear")], seed=0), "x": x * 6,
                   "y": [0.0] * 6, "batch_size": 10, "epochs": 1}, "max_network_activations"),
    ]
    with serving(limits=limits) as api:
        for route, request_body, limit in cases:
            body = assert_problem(api.post(f"/v1/nn/dense/{route}", json=request_body), 413)
            assert body["limit"] == limit, (route, body)
        info = api.get("/v1/info").json()["limits"]
        assert info["max_network_parameters"] == 100 and "max_training_steps" in info


def test_the_openapi_references_of_the_network_routes_resolve(api):
    document = api.get("/openapi.json").json()
    components = document["components"]["schemas"]

    def refs(node):
        if isinstance(node, dict):
            if "$ref" in node:
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    paths = {path: item for path, item in document["paths"].items() if path.startswith("/v1/nn/")}
    assert set(paths) == {f"/v1/nn/dense/{r}" for r in ("summary", "weights", "predict", "train")}
    found = list(refs(paths)) + list(refs(components))
    assert "#/components/schemas/NetworkSpec" in found
    for ref in found:
        assert ref.removeprefix("#/components/schemas/") in components, ref
    body = paths["/v1/nn/dense/train"]["post"]["requestBody"]["content"]
    assert {"application/json", "application/x-npz"} <= set(body)
