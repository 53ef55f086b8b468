"""Bad input to /v1/pyhf answers a 4xx problem that says what and where, never a 500."""

from __future__ import annotations

import copy

import pytest

from tests.conftest import assert_problem
from tests.helpers.pyhf_oracle import SEED_MODEL as SIMPLE
from tests.helpers.pyhf_oracle import WORKSPACE


def workspace(edit=None):
    ws = copy.deepcopy(WORKSPACE)
    if edit:
        edit(ws)
    return ws


def test_unknown_modifier_type_quotes_pyhf_and_path(api):
    def bogus(ws):
        ws["channels"][0]["samples"][1]["modifiers"][0]["type"] = "bogus"

    body = assert_problem(api.post("/v1/pyhf/fit", json={"model": {"workspace": workspace(bogus)}}), 422)
    assert "channels[0].samples[1].modifiers[0]" in body["detail"]
    assert "is not valid under any of the given schemas" in body["detail"]  # pyhf's (jsonschema's) words
    assert body["errors"][0]["loc"] == ["body", "model", "workspace", "channels", 0, "samples", 1, "modifiers", 0]


def test_missing_version_is_a_schema_error_at_top_level(api):
    body = assert_problem(api.post("/v1/pyhf/fit", json={"model": {"workspace": workspace(lambda ws: ws.pop("version"))}}), 422)
    assert "'version' is a required property" in body["detail"]


def test_mismatched_bin_counts(api):
    def short_sample(ws):
        ws["channels"][0]["samples"][0]["data"] = [3.0]  # the channel's other sample has 2 bins

    body = assert_problem(api.post("/v1/pyhf/fit", json={"model": {"workspace": workspace(short_sample)}}), 422)
    assert "Channel 'SR': sample 'bkg' has 2 bins but sample 'signal' has 1" in body["detail"]
    assert body["errors"][0]["loc"] == ["body", "model", "workspace", "channels", 0, "samples", 1, "data"]


def test_mismatched_modifier_bins(api):
    def short_histosys(ws):
        ws["channels"][1]["samples"][0]["modifiers"][1]["data"]["hi_data"] = [53.0]

    body = assert_problem(api.post("/v1/pyhf/fit", json={"model": {"workspace": workspace(short_histosys)}}), 422)
    assert "pyhf could not build the model" in body["detail"]


def test_mismatched_bins_in_simple_model(api):
    model = {"simple": {**SIMPLE["simple"], "bkg": [10.0, 12.0]}}
    body = assert_problem(api.post("/v1/pyhf/fit", json={"model": model}), 422)
    assert body["errors"][0]["loc"] == ["body", "model", "simple", "bkg"]
    assert "'bkg' has 2 bins but 'signal' has 1" in body["detail"]


def test_observations_with_wrong_bin_count(api):
    def short_obs(ws):
        ws["observations"][1]["data"] = [51.0]

    body = assert_problem(api.post("/v1/pyhf/fit", json={"model": {"workspace": workspace(short_obs)}, "data": "observed"}), 422)
    assert "observations" in body["detail"]


def test_unknown_measurement_lists_the_known_ones(api):
    body = assert_problem(api.post("/v1/pyhf/fit", json={"model": {"workspace": workspace(), "measurement": "Nope"}}), 422)
    assert "Nope" in body["detail"] and "NormalMeasurement" in body["detail"]
    assert body["errors"][0]["loc"] == ["body", "model", "measurement"]


@pytest.mark.parametrize("data", [[1.0, 2.0, 3.0], [], [1.0, 2.0, 3.0, 4.0, 5.0]])
def test_data_of_wrong_length_names_the_expected_length(api, data):
    body = assert_problem(api.post("/v1/pyhf/fit", json={"model": SIMPLE, "data": data}), 422)
    assert "expects 1 main-bin counts" in body["detail"] and "full vector of 2" in body["detail"]
    assert body["expected_length"] == [1, 2]


def test_negative_counts(api):
    body = assert_problem(api.post("/v1/pyhf/fit", json={"model": SIMPLE, "data": [-3.0]}), 422)
    assert "non-negative" in body["detail"]


def test_observed_data_of_a_simple_model(api):
    body = assert_problem(api.post("/v1/pyhf/fit", json={"model": SIMPLE, "data": "observed"}), 422)
    assert "no observations" in body["detail"]


def test_fixing_every_parameter(api):
    body = assert_problem(api.post("/v1/pyhf/fit", json={"model": SIMPLE, "fixed_params": ["mu", "uncorr_bkguncrt[0]"]}), 422)
    assert "nothing to fit" in body["detail"]


def test_unknown_parameter_name(api):
    body = assert_problem(api.post("/v1/pyhf/fit", json={"model": SIMPLE, "init_pars": {"nope": 1.0}}), 422)
    assert "'nope'" in body["detail"] and "mu" in body["detail"]
    assert body["errors"][0]["loc"] == ["body", "init_pars", "nope"]


def test_init_outside_bounds(api):
    body = assert_problem(api.post("/v1/pyhf/fit", json={"model": SIMPLE, "init_pars": {"mu": 20.0}}), 422)
    assert "outside their bounds" in body["detail"]


def test_empty_bounds(api):
    body = assert_problem(api.post("/v1/pyhf/fit", json={"model": SIMPLE, "par_bounds": {"mu": [2.0, 1.0]}}), 422)
    assert "empty" in body["detail"]


def test_model_needs_exactly_one_kind(api):
    assert_problem(api.post("/v1/pyhf/fit", json={"model": {}}), 422)
    assert_problem(api.post("/v1/pyhf/fit", json={"model": {**SIMPLE, "workspace": workspace()}}), 422)


def test_bad_patch(api):
    patch = [{"op": "remove", "path": "/channels/7"}]
    body = assert_problem(api.post("/v1/pyhf/fit", json={"model": {"workspace": workspace(), "patches": [patch]}}), 422)
    assert body["errors"][0]["loc"] == ["body", "model", "patches"]


def test_ellipse_pair_with_fixed_parameter(api):
    body = assert_problem(api.post("/v1/pyhf/fit", json={
        "model": SIMPLE, "fixed_params": ["uncorr_bkguncrt[0]"],
        "ellipse_pairs": [["mu", "uncorr_bkguncrt[0]"]]}), 422)
    assert "fixed" in body["detail"]


def test_scan_grid_over_the_limit_is_refused_before_work(api, settings):
    limit = settings.limits.max_scan_points
    body = assert_problem(api.post("/v1/pyhf/scan", json={
        "model": SIMPLE, "x": {"name": "mu", "low": 0, "high": 2, "points": 1000},
        "y": {"name": "uncorr_bkguncrt[0]", "low": 0.5, "high": 1.5, "points": 1000}}), 413)
    assert body["limit"] == "max_scan_points" and body["maximum"] == limit


def test_too_many_ellipse_pairs(api, settings):
    n = settings.limits.max_ellipse_pairs + 1
    body = assert_problem(api.post("/v1/pyhf/fit", json={"model": SIMPLE, "ellipse_pairs": [["mu", "x"]] * n}), 413)
    assert body["limit"] == "max_ellipse_pairs"


def test_too_many_hypotest_points(api, settings):
    n = settings.limits.max_hypotest_points + 1
    body = assert_problem(api.post("/v1/pyhf/hypotest", json={"model": SIMPLE, "poi_values": [1.0] * n}), 413)
    assert body["limit"] == "max_hypotest_points"
    body = assert_problem(api.post("/v1/pyhf/upper-limit", json={
        "model": SIMPLE, "scan": {"start": 0, "stop": 5, "points": n}}), 413)
    assert body["limit"] == "max_hypotest_points"


def test_hypotest_poi_outside_bounds_and_fixed_poi(api):
    body = assert_problem(api.post("/v1/pyhf/hypotest", json={"model": SIMPLE, "poi_values": [-1.0]}), 422)
    assert "bounds" in body["detail"]
    body = assert_problem(api.post("/v1/pyhf/hypotest", json={"model": SIMPLE, "poi_values": [1.0],
                                                               "fixed_params": ["mu"]}), 422)
    assert "POI" in body["detail"]


def test_upper_limit_scan_must_increase(api):
    body = assert_problem(api.post("/v1/pyhf/upper-limit", json={"model": SIMPLE, "scan": [2.0, 1.0]}), 422)
    assert "increasing" in body["detail"]


def test_scan_same_parameter_twice(api):
    body = assert_problem(api.post("/v1/pyhf/scan", json={
        "model": SIMPLE, "x": {"name": "mu", "low": 0, "high": 2}, "y": {"name": "mu", "low": 0, "high": 2}}), 422)
    assert "two different parameters" in body["detail"]


def test_asimov_pars_giving_negative_counts(api):
    body = assert_problem(api.post("/v1/pyhf/fit", json={"model": SIMPLE, "asimov_pars": {"mu": -100.0}}), 422)
    assert body["errors"][0]["loc"] == ["body", "asimov_pars"]


def test_hypotest_whose_fits_fail(api):
    empty = {"simple": {"kind": "correlated_background", "signal": [0.0], "bkg": [0.0], "bkg_up": [0.0],
                        "bkg_down": [0.0]}}
    body = assert_problem(api.post("/v1/pyhf/hypotest", json={"model": empty, "poi_values": [1.0]}), 422)
    assert "did not converge" in body["detail"]


def test_server_keeps_serving(api):
    assert api.post("/v1/pyhf/fit", json={"model": SIMPLE, "data": [1.0, 2.0, 3.0]}).status_code == 422
    assert api.post("/v1/pyhf/fit", json={"model": SIMPLE}).status_code == 200


def test_parameter_limit_is_checked_before_pyhf_builds_the_model(api, workers):
    """A 5,000-bin shapesys took ~9 s of pyhf validation and model building before its 413."""

    def refuse(*args, **kwargs):
        raise AssertionError("pyhf built a model that is over the parameter limit")

    workers.setattr("pyhf", "Workspace", refuse)
    workers.setattr("pyhf.simplemodels", "uncorrelated_background", refuse)
    n = 5_000
    ws = {"channels": [{"name": "c", "samples": [{"name": "s", "data": [1.0] * n, "modifiers": [
        {"name": "mu", "type": "normfactor", "data": None}, {"name": "u", "type": "shapesys", "data": [0.5] * n}]}]}],
        "observations": [{"name": "c", "data": [1.0] * n}],
        "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": []}}], "version": "1.0.0"}
    body = assert_problem(api.post("/v1/pyhf/fit", json={"model": {"workspace": ws}}), 413)
    assert body["limit"] == "max_pyhf_parameters" and body["value"] == n + 1
    # The same through a patch that adds the per-bin modifier.
    small = copy.deepcopy(ws)
    small["channels"][0]["samples"][0]["modifiers"].pop()
    patch = [{"op": "add", "path": "/channels/0/samples/0/modifiers/-",
              "value": {"name": "u", "type": "staterror", "data": [0.5] * n}}]
    body = assert_problem(api.post("/v1/pyhf/fit", json={"model": {"workspace": small, "patches": [patch]}}), 413)
    assert body["value"] == n + 1
    simple = {"kind": "uncorrelated_background", "signal": [1.0] * n, "bkg": [10.0] * n, "bkg_uncertainty": [1.0] * n}
    body = assert_problem(api.post("/v1/pyhf/fit", json={"model": {"simple": simple}}), 413)
    assert body["value"] == n + 1


@pytest.mark.parametrize("measurement", [None, "NormalMeasurement"])
def test_parameter_precount_equals_pyhf(measurement):
    """The count taken from the raw JSON equals pyhf's npars (shared names, per-bin modifiers)."""
    import pyhf

    from labcrunch_service.pyhf.models import _declared_parameters

    model = pyhf.Workspace(WORKSPACE).model(measurement_name=measurement)
    assert _declared_parameters({"workspace": WORKSPACE, "measurement": measurement}) == model.config.npars
    assert _declared_parameters({"simple": {**SIMPLE["simple"], "signal": [1.0, 2.0]}}) == 3
    assert _declared_parameters({"workspace": {"channels": 3}}) is None  # malformed: pyhf will say where


def test_scan_axis_whose_width_overflows(api):
    """low = −1e308, high = 1e308: each finite, but the width is inf and linspace gave NaN points."""
    body = assert_problem(api.post("/v1/pyhf/scan", json={
        "model": SIMPLE, "x": {"name": "mu", "low": -1e308, "high": 1e308, "points": 3},
        "y": {"name": "uncorr_bkguncrt[0]", "low": 0.5, "high": 1.5, "points": 3}}), 422)
    assert "finite" in body["detail"] or any("finite" in e["msg"] for e in body["errors"])


def test_unknown_interpolation_code_names_the_place(api):
    """histosys takes code0, code2, code4p; normsys code1, code4 (pyhf 0.7.6's own sets)."""
    for kind, code in (("histosys", "code1"), ("normsys", "code0"), ("normsys", "code9")):
        model = {"workspace": workspace(), "modifier_settings": {kind: {"interpcode": code}}}
        body = assert_problem(api.post("/v1/pyhf/fit", json={"model": model}), 422)
        assert body["errors"][0]["loc"][:5] == ["body", "model", "modifier_settings", kind, "interpcode"]


def test_discovery_statistic_tests_zero_only(api):
    body = assert_problem(api.post("/v1/pyhf/hypotest", json={"model": SIMPLE, "test_stat": "q0",
                                                              "poi_values": [1.0]}), 422)
    assert "q0" in body["detail"] or any("q0" in e["msg"] for e in body["errors"])
    body = assert_problem(api.post("/v1/pyhf/hypotest", json={"model": SIMPLE}), 422)
    assert any("poi_values" in e["msg"] for e in body["errors"])
    # upper limits test μ > 0: q0 is not one of their statistics
    assert_problem(api.post("/v1/pyhf/upper-limit", json={"model": SIMPLE, "scan": [0.0, 1.0], "test_stat": "q0"}), 422)


def test_too_many_toys_are_refused_before_work(api, settings):
    """ntoys × POI values over max_toys: 413 from the router, before the model is even built."""
    limit = settings.limits.max_toys
    ws = workspace(lambda ws: ws["channels"][0]["samples"][0].update(data=[1.0, 2.0, "three"]))  # invalid
    body = assert_problem(api.post("/v1/pyhf/hypotest", json={
        "model": {"workspace": ws}, "poi_values": [1.0, 2.0], "calctype": "toybased", "ntoys": limit // 2 + 1}), 413)
    assert body["limit"] == "max_toys" and body["value"] == 2 * (limit // 2 + 1)
    body = assert_problem(api.post("/v1/pyhf/upper-limit", json={
        "model": SIMPLE, "scan": {"start": 0, "stop": 5, "points": 11}, "calctype": "toybased",
        "ntoys": limit}), 413)
    assert body["limit"] == "max_toys"


def test_batch_fit_limits_and_a_bad_dataset(api, settings):
    n = settings.limits.max_fit_datasets + 1
    body = assert_problem(api.post("/v1/pyhf/fit", json={"model": SIMPLE, "data": [[1.0]] * n}), 413)
    assert body["limit"] == "max_fit_datasets" and body["value"] == n
    body = assert_problem(api.post("/v1/pyhf/fit", json={"model": SIMPLE, "data": [[15.0], [1.0, 2.0, 3.0]]}), 422)
    assert body["errors"][0]["loc"] == ["body", "data", 1]
