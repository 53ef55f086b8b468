"""An unknown request field is answered with the closest allowed names at the same place --
in every domain's JSON body (nested models too) and in query parameters."""

from __future__ import annotations

import pytest

from labcrunch_service.gradient.schemas import GradientRequest
from labcrunch_service.http.suggestions import suggest_fields
from tests.conftest import assert_problem

SIMPLE = {"simple": {"signal": [5.0], "bkg": [50.0], "bkg_uncertainty": [7.0]}}


@pytest.mark.parametrize("method, path, request_kwargs, loc, suggestion", [
    ("post", "/v1/gradient", {"json": {"expresion": "x", "at": {"x": 1}}}, ["body", "expresion"], "expression"),
    ("post", "/v1/gradient", {"params": {"expresion": "x"}, "content": b"",
                              "headers": {"Content-Type": "application/x-npz"}}, ["query", "expresion"], "expression"),
    ("post", "/v1/minimize", {"json": {"expression": "x**2", "start": {"x": 1}, "learning_rates": [0.1]}},
     ["body", "learning_rates"], "learning_rate"),
    ("post", "/v1/fit/line", {"json": {"x": [1, 2, 3], "y": [1, 2, 3], "methd": "least_squares"}},
     ["body", "methd"], "method"),
    ("post", "/v1/fit/line", {"json": {"x": [1, 2, 3], "y": [1, 2, 3],
                                       "gradient_descent": {"epoch": 3}}},
     ["body", "gradient_descent", "epoch"], "epochs"),
    ("post", "/v1/pyhf/fit", {"json": {"model": {"simple": {**SIMPLE["simple"], "bkg_uncertanty": [1.0]}},
                                       "data": "asimov"}},
     ["body", "model", "simple", "bkg_uncertanty"], "bkg_uncertainty"),
    ("post", "/v1/fractal", {"json": {"kind": "mandelbrot", "widht": 8}}, ["body", "widht"], "width"),
    ("get", "/v1/fractal/mandelbrot.png", {"params": {"max_itr": 5}}, ["query", "max_itr"], "max_iter"),
])
def test_unknown_fields_suggest_the_closest(api, method, path, request_kwargs, loc, suggestion):
    body = assert_problem(getattr(api, method)(path, **request_kwargs), 422)
    entry = next(e for e in body["errors"] if e["loc"] == loc)
    assert entry["type"] == "extra_forbidden"
    assert entry["msg"].endswith(f"did you mean `{suggestion}`?"), entry


def test_no_suggestion_when_nothing_is_close():
    errors = [{"loc": ["body", "zzzzzz"], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"},
              {"loc": ["body", "at"], "msg": "Field required", "type": "missing"}]
    assert suggest_fields(errors, {"body": GradientRequest}) == errors
    assert suggest_fields(errors[:1], {"query": GradientRequest}) == errors[:1]
