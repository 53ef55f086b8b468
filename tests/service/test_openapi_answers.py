"""The OpenAPI document tells the truth: every operation declares what it answers, and a real
answer of every operation validates against the schema the document gives for it."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator

SEED = {"model": {"simple": {"kind": "uncorrelated_background", "signal": [5.0], "bkg": [10.0],
                            "bkg_uncertainty": [3.5]}}, "data": "asimov"}

#: The seed notebook's network: Dense 64 relu, 32 relu, 1 softmax over 4 inputs.
NETWORK = {"inputs": 4, "layers": [{"units": 64, "activation": "relu"}, {"units": 32, "activation": "relu"},
                                   {"units": 1, "activation": "softmax"}]}

#: One real request per operation: (method, path as in the document, request path, JSON body).
EXAMPLES: list[tuple[str, str, str, Any]] = [
    ("get", "/livez", "/livez", None),
    ("get", "/readyz", "/readyz", None),
    ("get", "/v1/info", "/v1/info", None),
    ("post", "/v1/gradient", "/v1/gradient", {"expression": "sin(x) * y**2", "order": 2,
                                              "at": {"x": [0.1, 0.2], "y": [1.0, 2.0]}}),
    ("post", "/v1/minimize", "/v1/minimize", {"expression": "(x - 1)**2", "start": {"x": 3.0},
                                              "learning_rate": [0.1, 0.5], "steps": 5}),
    ("get", "/v1/minimize/optimizers", "/v1/minimize/optimizers", None),
    ("post", "/v1/fit/line", "/v1/fit/line", {"x": [0.0, 1.0, 2.0, 3.0], "y": [1.0, 3.1, 4.9, 7.2]}),
    ("post", "/v1/pyhf/fit", "/v1/pyhf/fit", SEED),
    ("post", "/v1/pyhf/scan", "/v1/pyhf/scan", {**SEED, "x": {"name": "mu", "low": 0.0, "high": 2.0,
                                                              "points": 3},
                                                "y": {"name": "uncorr_bkguncrt[0]", "low": 0.5,
                                                      "high": 1.5, "points": 3}}),
    ("post", "/v1/pyhf/hypotest", "/v1/pyhf/hypotest", {**SEED, "poi_values": [1.0],
                                                        "expected": True}),
    ("post", "/v1/pyhf/upper-limit", "/v1/pyhf/upper-limit", {**SEED, "scan": {"start": 0.1,
                                                                                "stop": 5.0,
                                                                                "points": 20}}),
    ("get", "/v1/fractal/{kind}.png", "/v1/fractal/mandelbrot.png?width=32&height=24", None),
    ("post", "/v1/fractal", "/v1/fractal", {"format": "json", "width": 8, "height": 6}),
    ("get", "/v1/fractal/tiles/{z}/{x}/{y}.png", "/v1/fractal/tiles/1/0/1.png", None),
    ("post", "/v1/nn/dense/summary", "/v1/nn/dense/summary", {"network": NETWORK}),
    ("post", "/v1/nn/dense/weights", "/v1/nn/dense/weights", {"network": NETWORK}),
    ("post", "/v1/nn/dense/predict", "/v1/nn/dense/predict", {"network": NETWORK,
                                                              "x": [[1, 2, 3, 4]], "jacobian": True}),
    ("post", "/v1/nn/dense/train", "/v1/nn/dense/train", {"network": NETWORK, "x": [[1, 2, 3, 4]] * 4,
                                                          "y": [0, 1, 0, 1], "epochs": 2,
                                                          "validation_split": 0.25,
                                                          "metrics": ["accuracy"]}),
]


@pytest.fixture(scope="module")
def document(api) -> dict[str, Any]:
    return api.get("/openapi.json").json()


def _success(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    return document["paths"][path][method]["responses"]["200"]


def test_every_operation_has_an_example_here(document):
    documented = {(method, path) for path, item in document["paths"].items() for method in item}
    assert documented == {(method, path) for method, path, _, _ in EXAMPLES}


def test_every_operation_declares_its_answer(document):
    for method, path, _, _ in EXAMPLES:
        content = _success(document, method, path).get("content", {})
        assert content, f"{method.upper()} {path} declares no answer"
        for media_type, entry in content.items():
            assert entry.get("schema"), f"{method.upper()} {path}: {media_type} has no schema"


@pytest.mark.parametrize(("method", "path", "url", "body"), EXAMPLES, ids=[e[1] for e in EXAMPLES])
def test_a_real_answer_matches_the_document(api, document, method, path, url, body):
    response = api.request(method.upper(), url, json=body)
    assert response.status_code == 200, response.text
    media_type = response.headers["content-type"].split(";")[0]
    content = _success(document, method, path)["content"]
    assert media_type in content, f"{path} answered {media_type}, the document says {list(content)}"
    schema = content[media_type]["schema"]
    if media_type != "application/json":
        assert schema.get("format") == "binary" and response.content
        return
    validator = Draft202012Validator({**schema, "components": document["components"]})
    errors = sorted(validator.iter_errors(response.json()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message[:300]}" for e in errors[:5])


def test_the_validation_above_can_fail(document):
    schema = _success(document, "post", "/v1/gradient")["content"]["application/json"]["schema"]
    validator = Draft202012Validator({**schema, "components": document["components"]})
    good = {"variables": ["x"], "value": 4.0, "gradient": {"x": 4.0}, "backend": "jax",
            "dtype": "float64", "device": "cpu", "elapsed_ms": 1.0}
    assert not list(validator.iter_errors(good))
    assert list(validator.iter_errors({**good, "value": "four"}))
    assert list(validator.iter_errors({k: v for k, v in good.items() if k != "gradient"}))
