"""Toy-based hypothesis tests: the sampler against pyhf's own, the toys' test statistics against
pyhf's, toy p-values against the asymptotic ones where those hold, seeds and progress."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pyhf
import pytest

from labcrunch_service import progress
from labcrunch_service.pyhf import calculators, toys
from labcrunch_service.pyhf.inference import hypotest
from labcrunch_service.pyhf.schemas import HypotestRequest
from labcrunch_service.settings import Limits
from tests.helpers import pyhf_oracle as oracle
from tests.helpers.pyhf_oracle import SEED_MODEL


def post(api, path, **body):
    response = api.post(f"/v1/pyhf/{path}", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_sampler_matches_pyhfs_own_sampler():
    """8,000 draws each from pyhf's ``make_pdf(pars).sample`` and the service's sampler, at the
    example workspace's init shifted by 0.05 (normsys, histosys, shapesys, staterror, lumi):
    every entry's mean and variance agree within 5 standard errors, and the means with pyhf's
    expected data."""
    model, _, _ = oracle.workspace()
    pars = np.asarray(model.config.suggested_init()) + 0.05
    count = 8_000
    np.random.seed(7)  # pyhf samples with numpy's global state (scipy.stats)
    theirs = np.asarray(model.make_pdf(jnp.asarray(pars)).sample((count,)), dtype=np.float64)
    ours = toys.sample(model, pars, count, np.random.default_rng(7))
    assert ours.shape == theirs.shape
    variance = theirs.var(axis=0)
    assert np.all(np.abs(ours.mean(axis=0) - theirs.mean(axis=0)) < 5 * np.sqrt(2 * variance / count))
    assert np.all(np.abs(ours.var(axis=0) - variance) < 5 * variance * np.sqrt(4 / count))
    expected = np.asarray(model.expected_data(jnp.asarray(pars)))  # the exact means
    assert np.all(np.abs(ours.mean(axis=0) - expected) < 5 * np.sqrt(variance / count))


def test_toy_statistics_equal_pyhfs_qmu_tilde(api):
    """Five toys of the seed model: the service's batch fits (POI fixed at μ, and free) give
    q̃μ equal to pyhf's own ``qmu_tilde`` on the same datasets (its fits run to 1e-12)."""
    model, data = oracle.seed()
    datasets = toys.sample(model, np.asarray([1.0, 1.0]), 5, np.random.default_rng(3))
    mu = 1.5
    free = post(api, "fit", model=SEED_MODEL, data=datasets.tolist())
    pinned = post(api, "fit", model=SEED_MODEL, data=datasets.tolist(), init_pars={"mu": mu}, fixed_params=["mu"])
    assert free["datasets"] == 5 and all(free["converged"]) and pinned["fixed"] == ["mu"]
    q = calculators.test_statistic("qtilde", mu, pinned["twice_nll"], free["twice_nll"],
                                   np.asarray(free["bestfit"])[:, 0])
    init, bounds, fixed = model.config.suggested_init(), model.config.suggested_bounds(), model.config.suggested_fixed()
    with oracle.tight_fits():
        expected = [float(pyhf.infer.test_statistics.qmu_tilde(mu, jnp.asarray(d), model, init, bounds, fixed))
                    for d in datasets]
    np.testing.assert_allclose(q, expected, rtol=1e-7, atol=1e-9)


def test_toys_approach_the_asymptotic_formulae_at_high_counts(api):
    """1,000 expected background counts: the distributions of q̃μ are close to their asymptotic
    forms, so toy CLs+b, CLb and CLs agree with the asymptotic ones within 4 Monte-Carlo
    standard errors (plus 0.01 for what remains of the approximation)."""
    big = {"simple": {"kind": "uncorrelated_background", "signal": [60.0], "bkg": [1000.0],
                      "bkg_uncertainty": [20.0]}}
    common = {"model": big, "data": [1010.0], "poi_values": [1.2]}
    asymptotic = post(api, "hypotest", **common)
    toy = post(api, "hypotest", **common, calctype="toybased", ntoys=400, seed=11)
    assert toy["warnings"] == []
    for key in ("clsb", "clb", "cls"):
        sigma = toy[f"{key}_uncertainty"][0]
        assert 0 < sigma < 0.05
        assert toy[key][0] == pytest.approx(asymptotic[key][0], abs=4 * sigma + 0.01)


def test_a_seed_reproduces_the_toys(api):
    body = {"model": SEED_MODEL, "data": [17.0], "poi_values": [0.5, 2.0], "calctype": "toybased",
            "ntoys": 60, "expected": True}
    fresh = post(api, "hypotest", **body)
    assert isinstance(fresh["seed"], int) and fresh["ntoys"] == 60
    again = post(api, "hypotest", **body, seed=fresh["seed"])
    for key in ("cls", "clsb", "clb", "cls_expected", "cls_uncertainty"):
        assert again[key] == fresh[key]
    other = post(api, "hypotest", **body, seed=fresh["seed"] + 1)
    assert other["cls_expected"] != fresh["cls_expected"]
    # CLs = CLs+b / CLb toy by toy too, and the band rises from −2σ to +2σ
    assert fresh["cls"][1] == pytest.approx(fresh["clsb"][1] / fresh["clb"][1], rel=1e-12)
    assert fresh["cls_expected"][1] == sorted(fresh["cls_expected"][1])


def test_progress_counts_toys():
    """Progress goes up in toys (s+b and b, at every POI value) to the total."""
    seen = []

    class Recording(progress.Tracker):
        def check(self) -> None:
            seen.append((self.done, self.total, self.unit))

    request = HypotestRequest.model_validate({"model": SEED_MODEL, "poi_values": [1.0, 2.0],
                                              "calctype": "toybased", "ntoys": 20, "seed": 1})
    with progress.tracking(Recording()):
        hypotest(request, Limits())
    counts = [done for done, total, unit in seen if unit == "toys"]
    assert counts == sorted(counts) and counts[-1] == 80 and {t for _, t, u in seen if u == "toys"} == {80.0}


def test_toy_based_upper_limit(api):
    """The limit from toys at a few points, with its seed; the observed limit lies where the toy
    CLs crosses 0.05, between the two grid points around it."""
    out = post(api, "upper-limit", model=SEED_MODEL, data=[12.0], scan=[0.5, 1.5, 2.5, 3.5, 4.5],
               calctype="toybased", ntoys=150, seed=5)
    assert out["calctype"] == "toybased" and out["seed"] == 5 and out["ntoys"] == 150
    cls = np.asarray(out["cls"])
    k = int(np.flatnonzero(cls < 0.05)[0])
    assert out["scan"][k - 1] <= out["observed"] <= out["scan"][k]
