"""Strict numbers in every domain's schemas: `true` is not 1 and "0.5" is not 0.5 (JSON bodies and
query parameters), except the documented "NaN"/"Infinity"/"-Infinity"; integers take 2 or 2.0
(JSON Schema's integers), never 1.5."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from labcrunch_service.fit.schemas import FitQuery
from labcrunch_service.fractal.schemas import FractalQuery, TileParams
from labcrunch_service.gradient.schemas import GradientQuery
from labcrunch_service.minimize.schemas import MinimizeRequest
from labcrunch_service.schemas import (
    Boolean,
    FiniteFloat,
    Float,
    Integer,
    Number,
    QueryParameters,
)
from tests.conftest import assert_problem

SIMPLE = {"kind": "uncorrelated_background", "signal": [5.0, 3.0], "bkg": [50.0, 40.0],
          "bkg_uncertainty": [5.0, 4.0]}
# One valid body per JSON operation, with every kind of numeric and boolean field it has.
BODIES = {
    "/v1/gradient": {"expression": "(x - 1)**2 * y", "at": {"x": [1.0, 2.0], "y": 3.0}, "order": 1},
    "/v1/minimize": {"expression": "x**2", "start": {"x": 1.0}, "optimizer": "momentum",
                     "learning_rate": [0.1, 0.2], "options": {"momentum": 0.5}, "steps": 3,
                     "tolerance": 0.001, "history_every": 1, "bounds": {"x": [-2.0, 2.0]},
                     "landscape": 3},
    "/v1/fit/line": {"x": [0.0, 1.0, 2.0], "y": [1.0, 3.0, 5.0], "sigma": [1.0, 1.0, 1.0],
                     "method": "gradient_descent", "gradient_descent": {
                         "learning_rate": 0.1, "epochs": 2, "batch_size": 2, "seed": 1,
                         "shuffle": True, "standardize": True, "initial": {"m": 0.0, "q": 0.0}}},
    "/v1/pyhf/fit": {"model": {"simple": SIMPLE}, "init_pars": {"mu": 1.0},
                     "par_bounds": {"mu": [0.0, 10.0]}, "confidence_levels": [0.68]},
    "/v1/pyhf/scan": {"model": {"simple": SIMPLE}, "x": {"name": "mu", "low": 0.0, "high": 2.0, "points": 3},
                      "y": {"name": "uncorr_bkguncrt[0]", "low": 0.5, "high": 1.5, "points": 3},
                      "gradient_points": [2, 2], "profile": False, "at": {"uncorr_bkguncrt[1]": 1.0}},
    "/v1/pyhf/hypotest": {"model": {"simple": SIMPLE}, "poi_values": [1.0, 2.0], "expected": True,
                          "data": [52.0, 41.0]},
    "/v1/pyhf/upper-limit": {"model": {"simple": SIMPLE}, "scan": {"start": 0.0, "stop": 5.0, "points": 3},
                             "level": 0.05},
    "/v1/fractal": {"width": 8, "height": 8, "max_iter": 10, "center_x": -0.5, "center_y": 0.0,
                    "scale": 3.0, "escape_radius": 2.0, "smooth": True, "format": "json"},
}


def leaves(value: Any, path: tuple = ()) -> list[tuple[tuple, Any]]:
    """Every number and boolean in a JSON value, with its path."""
    if isinstance(value, dict):
        return [leaf for key, item in value.items() for leaf in leaves(item, (*path, key))]
    if isinstance(value, list):
        return [leaf for i, item in enumerate(value) for leaf in leaves(item, (*path, i))]
    return [(path, value)] if isinstance(value, bool | int | float) else []


def replaced(body: dict, path: tuple, value: Any) -> dict:
    copied = copy.deepcopy(body)
    target = copied
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return copied


def impostors(value: Any) -> list[Any]:
    """What lax parsing took for ``value``: for a number true and its digits as a string; for a
    boolean 1 and "true"."""
    if isinstance(value, bool):
        return [int(value), str(value).lower()]
    return [True, str(value)]


CASES = [pytest.param(path, leaf, impostor, id=f"{path} {'.'.join(map(str, leaf))}={impostor!r}")
         for path, body in BODIES.items() for leaf, value in leaves(body) for impostor in impostors(value)]


@pytest.mark.parametrize(("path", "leaf", "impostor"), CASES)
def test_json_numbers_and_booleans_are_strict(api, path, leaf, impostor):
    body = assert_problem(api.post(path, json=replaced(BODIES[path], leaf, impostor)), 422)
    # The error names the field (or the union, e.g. a number or a list, that holds the value).
    assert any(e["loc"][:2] == ["body", leaf[0]] for e in body["errors"]), body["errors"]


@pytest.mark.parametrize(("model", "query", "field"), [
    (FractalQuery, {"smooth": "1"}, "smooth"),
    (FractalQuery, {"smooth": "yes"}, "smooth"),
    (FractalQuery, {"width": "2.5"}, "width"),
    (FractalQuery, {"width": "1_000"}, "width"),
    (FractalQuery, {"width": " 8"}, "width"),
    (FractalQuery, {"center_x": "inf"}, "center_x"),
    (FractalQuery, {"center_x": "nan"}, "center_x"),
    (TileParams, {"max_iter": "true"}, "max_iter"),
    (FitQuery, {"shuffle": "on"}, "shuffle"),
    (FitQuery, {"epochs": "2.5"}, "epochs"),
    (FitQuery, {"init_m": "0x10"}, "init_m"),
    (GradientQuery, {"order": "true"}, "order"),
])
def test_query_parameters_are_strict(model, query, field):
    with pytest.raises(ValidationError) as raised:
        model.model_validate(query)
    assert [e["loc"] for e in raised.value.errors()] == [(field,)]


def test_query_parameters_read_as_their_json_types():
    view = FractalQuery.model_validate({"width": "64", "height": "2.0", "smooth": "false",
                                        "center_x": "-0.5", "center_y": "1e-3", "scale": "3"})
    assert (view.width, view.height, view.smooth) == (64, 2, False)
    assert (view.center_x, view.center_y, view.scale) == (-0.5, 0.001, 3.0)
    fit = FitQuery.model_validate({"init_m": "0.5", "epochs": "3", "shuffle": "true"})
    assert (fit.initial_m, fit.epochs, fit.shuffle) == (0.5, 3, True)
    assert GradientQuery.model_validate({"expression": "2", "order": "2"}).expression == "2"


def test_an_integer_is_2_or_2_point_0_never_1_point_5():
    integer = TypeAdapter(Integer)
    assert integer.validate_json("2") == 2 and integer.validate_json("2.0") == 2
    assert integer.validate_json("-4e2") == -400
    for bad in ("1.5", "true", '"2"', "1e400", "NaN"):
        with pytest.raises(ValidationError):
            integer.validate_json(bad)
    request = MinimizeRequest.model_validate_json(b'{"expression": "x", "start": {"x": 1}, "steps": 2.0}')
    assert request.steps == 2 and type(request.steps) is int


def test_bounds_of_integers_in_unions_and_tuples_are_in_the_json_schema():
    from labcrunch_service.pyhf.schemas import ScanRequest

    landscape = MinimizeRequest.model_json_schema()["properties"]["landscape"]
    assert landscape["anyOf"][0] == {"type": "integer", "minimum": 2}
    points = ScanRequest.model_json_schema()["properties"]["gradient_points"]["prefixItems"]
    assert points == [{"type": "integer", "minimum": 2}] * 2
    with pytest.raises(ValidationError):
        MinimizeRequest.model_validate_json(b'{"expression": "x", "start": {"x": 1}, "landscape": 1.0}')


def test_numbers_take_json_numbers_and_the_documented_strings():
    number, finite, real = TypeAdapter(Number), TypeAdapter(FiniteFloat), TypeAdapter(Float)
    assert number.validate_json('"Infinity"') == math.inf and math.isnan(number.validate_json('"NaN"'))
    assert number.validate_json('"-Infinity"') == -math.inf and number.validate_json("3") == 3.0
    assert real.validate_json("3") == 3.0 and type(real.validate_json("3")) is float
    for bad in ('"nan"', '"inf"', '"0.5"', "true", "null", "[1]"):
        with pytest.raises(ValidationError) as raised:
            number.validate_json(bad)
        assert [e["loc"] for e in raised.value.errors()] == [()]  # one error, no union internals
    for bad in ('"NaN"', "1e400", "true"):
        with pytest.raises(ValidationError):
            finite.validate_json(bad)
    assert TypeAdapter(Boolean).validate_json("false") is False
    with pytest.raises(ValidationError):
        TypeAdapter(Boolean).validate_json("0")


def test_query_models_refuse_unknown_parameters_and_keep_text_fields_text():
    class Query(QueryParameters):
        name: str = "x"
        count: Integer = Field(1, ge=0)
        flags: list[str] = []

    assert Query.model_validate({"name": "007", "count": "7"}).model_dump() == {
        "name": "007", "count": 7, "flags": []}
    with pytest.raises(ValidationError):
        Query.model_validate({"nmae": "x"})
    assert issubclass(Query, BaseModel)
