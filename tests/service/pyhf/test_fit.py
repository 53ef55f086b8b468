"""/v1/pyhf/fit: best fit, Hessian, covariance and ellipses against independent oracles.

Oracles: the closed-form Hessian of the seed's counting experiment, MINUIT's HESSE (iminuit run
here on pyhf's own twice_nll), and a direct pyhf fit + jax.hessian computed in the test.
"""

from __future__ import annotations

import iminuit
import jax
import jax.numpy as jnp
import numpy as np
import pyhf
import pytest

from tests.helpers import pyhf_oracle as oracle
from tests.helpers.pyhf_oracle import SEED_MODEL, WORKSPACE_MODEL


def fit(api, **body):
    response = api.post("/v1/pyhf/fit", json=body)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def seed_fit(api):
    return fit(api, model=SEED_MODEL, data="asimov")


def test_seed_model_bestfit_and_covariance(seed_fit):
    """The seed's counting experiment, n = s·μ + b·γ with a Poisson constraint on γ.

    NLL = −n ln λ + λ − a ln(τγ) + τγ with λ = sμ + bγ, s = 5, b = 10, τ = (b/σ_b)² = (10/3.5)²,
    Asimov data n = 15, a = τ. At the best fit (1, 1) the Hessian of NLL is
    [[n s²/λ², n s b/λ²], [n s b/λ², n b²/λ² + a]] and the covariance is its inverse.
    """
    s, b, tau = 5.0, 10.0, (10.0 / 3.5) ** 2
    n, lam, a = 15.0, 15.0, tau
    hessian_nll = np.array([[n * s * s / lam**2, n * s * b / lam**2],
                            [n * s * b / lam**2, n * b * b / lam**2 + a]])
    expected_cov = np.linalg.inv(hessian_nll)

    assert seed_fit["parameters"] == ["mu", "uncorr_bkguncrt[0]"]
    assert seed_fit["poi"] == "mu"
    np.testing.assert_allclose(seed_fit["bestfit"], [1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(seed_fit["covariance"], expected_cov, atol=1e-6)
    # The numbers. The seed notebook computed inv(−2·∇² ln L) = inv(2·∇² NLL), which is
    # HALF the covariance ([[0.545, −0.1225], [−0.1225, 0.06125]]): the covariance is the inverse
    # of the Hessian of NLL = −ln L, not of twice_nll = −2 ln L.
    np.testing.assert_allclose(seed_fit["covariance"], [[1.09, -0.245], [-0.245, 0.1225]], atol=1e-6)
    np.testing.assert_allclose(seed_fit["uncertainties"], [np.sqrt(1.09), 0.35], atol=1e-6)
    assert abs(seed_fit["uncertainties"][0] - 1.044) < 1e-3
    np.testing.assert_allclose(seed_fit["hessian"], 2 * hessian_nll, rtol=1e-9)  # of −2 ln L
    seed_wrong = np.linalg.inv(np.asarray(seed_fit["hessian"]))
    np.testing.assert_allclose(seed_wrong, [[0.545, -0.1225], [-0.1225, 0.06125]], atol=1e-6)
    corr = seed_fit["correlation"]
    assert corr[0][1] == pytest.approx(-0.245 / np.sqrt(1.09 * 0.1225), abs=1e-9)
    assert seed_fit["converged"] is True
    assert seed_fit["fixed"] == []
    assert seed_fit["backend"] == "jax" and seed_fit["device"] and seed_fit["elapsed_ms"] > 0


def test_seed_model_matches_minuit_hesse(seed_fit):
    """HESSE, run here with iminuit on pyhf's twice_nll (errordef 1), agrees within 1 %.

    Why they differ at all: HESSE takes second derivatives by finite differences at MIGRAD's
    minimum, which is only found to within its EDM tolerance; the autodiff Hessian is exact at the
    optimiser's best fit. In practice the two agree to ~1e-4. (MINUIT's reported `errors` for a
    bounded μ differ by ~2 % from sqrt(cov), because MINUIT maps errors of bounded parameters
    through its internal sine transform; the covariance is the comparable quantity.)
    """
    model, data = oracle.seed()

    compiled = jax.jit(lambda p: pyhf.infer.mle.twice_nll(p, data, model)[0])  # MIGRAD calls it ~100 times

    def twice_nll(p):
        return float(compiled(jnp.asarray(p, dtype=jnp.float64)))

    minuit = iminuit.Minuit(twice_nll, np.array([0.5, 0.8]), name=model.config.par_names)
    minuit.errordef = 1.0  # the objective is −2 ln L: Δ(−2 ln L) = 1 ⇔ 1σ
    minuit.strategy = 2
    minuit.limits = model.config.suggested_bounds()
    minuit.migrad()
    minuit.hesse()
    assert minuit.valid
    np.testing.assert_allclose(np.asarray(minuit.covariance), seed_fit["covariance"], rtol=1e-2)


def test_minuit_optimizer_gives_the_same_fit(api, seed_fit):
    out = fit(api, model=SEED_MODEL, optimizer="minuit")
    assert out["optimizer"] == "minuit"
    np.testing.assert_allclose(out["bestfit"], seed_fit["bestfit"], atol=1e-3)
    np.testing.assert_allclose(out["covariance"], seed_fit["covariance"], rtol=1e-2)


@pytest.mark.parametrize("fixed", [[], ["lumi", "sig_theory"]])
def test_two_channel_workspace_matches_direct_pyhf(api, fixed):
    """normsys, histosys, shapesys, staterror and lumi: the oracle is a plain pyhf fit and the
    inverse of jax.hessian(NLL) over the free parameters."""
    model, data, hessian_nll = oracle.workspace()
    names = model.config.par_names
    is_fixed = np.isin(names, fixed)
    # SLSQP at its default tolerance stops ~1e-5 short of the minimum (a histosys α: 1.1e-5
    # against 1.0e-7); run to 1e-12, the oracle is good to the tolerances below.
    bestfit = np.asarray(pyhf.infer.mle.fit(data, model, fixed_params=is_fixed.tolist(), tolerance=1e-12))
    free = ~is_fixed
    cov = np.linalg.inv(np.asarray(hessian_nll(bestfit))[np.ix_(free, free)])

    out = fit(api, model=WORKSPACE_MODEL, data="observed",
              fixed_params=fixed)
    assert out["parameters"] == names
    np.testing.assert_allclose(out["bestfit"], bestfit, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["covariance"], cov, rtol=1e-3, atol=1e-7)
    assert out["free_parameters"] == [n for n, f in zip(names, is_fixed, strict=True) if not f]
    assert out["fixed"] == [n for n in names if n in fixed]
    assert len(out["covariance"]) == len(names) - len(fixed)
    for name in fixed:
        assert out["uncertainties"][names.index(name)] == 0.0


def test_user_fixed_parameter_is_excluded_from_the_hessian(api):
    out = fit(api, model=SEED_MODEL, fixed_params=["uncorr_bkguncrt[0]"], init_pars={"uncorr_bkguncrt[0]": 1.1})
    # Oracle: γ held at 1.1, μ from its own 1-D fit; σ_μ² = 1 / ∂²NLL/∂μ².
    mu = (15.0 - 10.0 * 1.1) / 5.0  # n = 5μ + 10γ at the minimum of the Poisson term
    assert out["bestfit"][0] == pytest.approx(mu, abs=1e-5)
    assert out["free_parameters"] == ["mu"] and out["fixed"] == ["uncorr_bkguncrt[0]"]
    # ∂²NLL/∂μ² = n s² / λ² with λ = n = 15 at the minimum: σ_μ² = 15² / (15 · 5²) = 0.6.
    # (rel 1e-4: the optimiser finds μ to ~1e-6, and the curvature moves with it.)
    assert out["covariance"] == [[pytest.approx(0.6, rel=1e-4)]]
    assert out["ellipses"] == []  # one free parameter: no pairs


def test_ellipses_in_fit_response(seed_fit):
    cov = np.asarray(seed_fit["covariance"])
    ellipses = seed_fit["ellipses"]
    assert [(e["confidence_level"], e["region"]) for e in ellipses] == [(0.6827, "joint"), (0.9545, "joint")]
    for e in ellipses:
        assert e["parameters"] == ["mu", "uncorr_bkguncrt[0]"]
        assert e["center"] == pytest.approx([1.0, 1.0], abs=1e-6)
        # Independent check: eigen-decomposition with np.linalg.eig (not eigh), sorted by hand.
        values, vectors = np.linalg.eig(cov)
        major = vectors[:, np.argmax(values)]
        angle = np.degrees(np.arctan(major[1] / major[0]))  # (−90, 90): an axis has no sign
        assert e["angle_deg"] == pytest.approx(angle, abs=1e-6)
        assert e["semi_axes"] == pytest.approx(np.sqrt(e["delta_chi2"] * np.sort(values)[::-1]), rel=1e-9)
    assert ellipses[0]["delta_chi2"] == pytest.approx(2.2958, abs=1e-3)
    assert ellipses[1]["delta_chi2"] == pytest.approx(6.18, abs=1e-2)


def test_projection_ellipse_shadows_are_one_sigma(api):
    out = fit(api, model=SEED_MODEL, ellipse_region="projection", confidence_levels=[0.6827])
    (e,) = out["ellipses"]
    assert e["delta_chi2"] == pytest.approx(1.0, abs=1e-3)
    # The half-width of the ellipse along x is sqrt(a² cos² θ + b² sin² θ): it must be σ_μ.
    a, b = e["semi_axes"]
    t = np.radians(e["angle_deg"])
    half_width_x = np.sqrt((a * np.cos(t)) ** 2 + (b * np.sin(t)) ** 2)
    half_width_y = np.sqrt((a * np.sin(t)) ** 2 + (b * np.cos(t)) ** 2)
    assert half_width_x == pytest.approx(np.sqrt(1.09), rel=2e-3)  # Δχ²(68.27 %, 1 dof) ≈ 1.0
    assert half_width_y == pytest.approx(0.35, rel=2e-3)


def test_cached_model_reuses_compiled_functions(api, workers):
    """Same model again (keys in another order): one build. Its first answer compiles the
    stepwise path; asked again, the model's whole-fit program compiles once, in the background;
    later requests, with other data, compile nothing and agree with the stepwise answers. (An
    idle pool hands sequential requests to the same worker.)"""
    from labcrunch_service.pyhf.minimizers import wait_for_background_compiles

    def misses() -> int:
        return sum(workers.read("labcrunch_service.pyhf.models", "MODELS.misses"))

    simple = {"simple": {"kind": "uncorrelated_background", "signal": [2.3, 3.0], "bkg": [7.0, 9.0],
                         "bkg_uncertainty": [1.5, 2.5]}}
    reordered = {"simple": dict(reversed(list(simple["simple"].items())))}
    workers.call(wait_for_background_compiles)  # other tests' models first: the counts below are this model's
    before = workers.traces()
    stepwise, programs = before["pyhf.stepwise"], before["pyhf.newton"]
    first = fit(api, model=simple)
    assert workers.traces()["pyhf.stepwise"] == stepwise + 1  # a model no other test uses: a new compilation
    built = misses()
    second = fit(api, model=reordered, data=[5.0, 12.0])
    assert misses() == built and workers.traces()["pyhf.stepwise"] == stepwise + 1
    workers.call(wait_for_background_compiles)
    assert workers.traces()["pyhf.newton"] == programs + 1
    third = fit(api, model=simple, data=[5.0, 12.0])  # the compiled program's answer
    after = workers.traces()
    assert (after["pyhf.stepwise"], after["pyhf.newton"]) == (stepwise + 1, programs + 1)
    assert first["bestfit"] != second["bestfit"]  # different data, same compiled functions
    np.testing.assert_allclose(third["bestfit"], second["bestfit"], rtol=1e-9, atol=1e-12)
    assert third["twice_nll"] == pytest.approx(second["twice_nll"], rel=1e-12)
    np.testing.assert_allclose(third["hessian"], second["hessian"], rtol=1e-8)  # exact vs finite differences


def test_degenerate_parameters_give_nan_covariance_and_a_warning(api):
    """Two normfactors on one sample: only their product is measured, so the Hessian is singular
    (rank 1, exactly [[h, h], [h, h]]; a new model's first answer has it from finite differences,
    good to ~1e-10). The answer says so instead of inverting it."""
    ws = {"channels": [{"name": "c", "samples": [
        {"name": "s", "data": [5.0, 6.0], "modifiers": [{"name": "mu", "type": "normfactor", "data": None},
                                                         {"name": "k", "type": "normfactor", "data": None}]},
        {"name": "b", "data": [10.0, 10.0], "modifiers": []}]}],
        "observations": [{"name": "c", "data": [15.0, 16.0]}],
        "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": []}}], "version": "1.0.0"}
    out = fit(api, model={"workspace": ws}, data="observed")
    h = np.asarray(out["hessian"])
    assert np.linalg.matrix_rank(h, tol=1e-9 * np.abs(h).max()) == 1
    assert out["covariance"] == [["NaN", "NaN"], ["NaN", "NaN"]]
    assert out["ellipses"] == [] and "not finite and positive definite" in out["warnings"][0]


def test_asimov_pars_and_full_data_vector(api):
    """Asimov data reproduce their generating parameters at the best fit (the Asimov property),
    and the full data vector (main + auxiliary) answers like the main-bin counts alone."""
    shifted = fit(api, model=SEED_MODEL, data="asimov", asimov_pars={"mu": 2.0, "uncorr_bkguncrt[0]": 0.9})
    # atol 1e-3 (≈ 1e-3 σ): scipy's SLSQP stops at its default tolerance, here started away from
    # the minimum (at the suggested init 1, 1).
    np.testing.assert_allclose(shifted["bestfit"], [2.0, 0.9], atol=1e-3)
    tau = (10.0 / 3.5) ** 2
    full = fit(api, model=SEED_MODEL, data=[18.0, tau])
    main = fit(api, model=SEED_MODEL, data=[18.0])
    np.testing.assert_allclose(full["bestfit"], main["bestfit"], rtol=1e-12)
    assert full["bestfit"][0] == pytest.approx((18.0 - 10.0) / 5.0, abs=1e-3)  # γ̂ = 1: μ̂ = (n − b)/s


def test_workspace_patch_is_applied(api):
    """A JSON patch on the model spec (here: a larger signal) against pyhf's own patched model."""
    patch = [{"op": "replace", "path": "/channels/0/samples/0/data", "value": [6.0, 10.0]}]
    ws = pyhf.Workspace(oracle.WORKSPACE)
    model = ws.model(measurement_name="NormalMeasurement", patches=[patch])
    data = jnp.asarray(ws.data(model), dtype=jnp.float64)
    bestfit = np.asarray(pyhf.infer.mle.fit(data, model, tolerance=1e-12))  # as the test above
    out = fit(api, model={**WORKSPACE_MODEL, "patches": [patch]}, data="observed")
    np.testing.assert_allclose(out["bestfit"], bestfit, rtol=1e-4, atol=1e-5)
    assert out["bestfit"][model.config.poi_index] == pytest.approx(bestfit[model.config.poi_index], rel=1e-4)
    assert bestfit[model.config.poi_index] < 1.0  # twice the signal: about half the strength


def test_model_cache_is_a_bounded_lru():
    from labcrunch_service.cache import LruCache
    from labcrunch_service.pyhf.models import canonical_key

    cache = LruCache(2)
    built = []

    def builder(name):
        return lambda: built.append(name) or name

    for name in ("a", "b", "a", "c", "b"):  # "a" used again, so "b" is the oldest when "c" arrives
        cache.get_or_build(name, builder(name))
    assert built == ["a", "b", "c", "b"] and len(cache) == 2
    assert (cache.misses, cache.hits) == (4, 1)
    assert canonical_key({"x": 1, "y": [1.5]}) == canonical_key({"y": [1.5], "x": 1})


@pytest.mark.parametrize("nbins", [3, 20])  # 4 and 21 parameters: both sides of FORWARD_HESSIAN_MAX_PARAMETERS
def test_many_bin_hessian_against_closed_form(api, nbins):
    """NLL = Σᵢ λᵢ − nᵢ ln λᵢ + τᵢγᵢ − aᵢ ln(τᵢγᵢ), λᵢ = sᵢμ + bᵢγᵢ, τᵢ = (bᵢ/σᵢ)²: its Hessian at
    the best fit is ∂²μμ = Σ nᵢsᵢ²/λᵢ², ∂²μγᵢ = nᵢsᵢbᵢ/λᵢ², ∂²γᵢγᵢ = nᵢbᵢ²/λᵢ² + aᵢ/γᵢ²."""
    s = np.linspace(1.0, 4.0, nbins)
    b = np.linspace(10.0, 20.0, nbins)
    sigma = np.linspace(2.0, 3.0, nbins)
    n = np.round(s * 1.3 + b * 1.05)
    tau = (b / sigma) ** 2
    out = fit(api, model={"simple": {"kind": "uncorrelated_background", "signal": s.tolist(), "bkg": b.tolist(),
                                     "bkg_uncertainty": sigma.tolist()}}, data=n.tolist())
    mu, gamma = out["bestfit"][0], np.asarray(out["bestfit"][1:])
    lam = s * mu + b * gamma
    h = np.zeros((nbins + 1, nbins + 1))
    h[0, 0] = np.sum(n * s**2 / lam**2)
    h[0, 1:] = h[1:, 0] = n * s * b / lam**2
    h[1:, 1:] = np.diag(n * b**2 / lam**2 + tau / gamma**2)
    np.testing.assert_allclose(out["hessian"], 2 * h, rtol=1e-9)
    np.testing.assert_allclose(out["covariance"], np.linalg.inv(h), rtol=1e-9)


def test_model_cache_builds_outside_its_lock():
    """A slow build (seconds, for a big workspace) holds up neither other models nor, twice,
    its own: a second request for the same key waits for the first build."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from labcrunch_service.cache import LruCache

    cache = LruCache(4)
    release = threading.Event()
    calls = []

    def slow():
        calls.append("slow")
        assert release.wait(10)
        return "slow model"

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(cache.get_or_build, "slow", slow)
        while not calls:
            threading.Event().wait(0.01)
        second = pool.submit(cache.get_or_build, "slow", slow)
        other = ThreadPoolExecutor(1).submit(cache.get_or_build, "quick", lambda: "quick model")
        assert other.result(timeout=2) == "quick model"  # the old cache built under one lock: stuck
        release.set()
        assert first.result(timeout=5) == second.result(timeout=5) == "slow model"
    assert calls == ["slow"] and cache.misses == 3 and len(cache) == 2  # the second "slow" waited

    def broken():
        raise ValueError("bad spec")

    with pytest.raises(ValueError):
        cache.get_or_build("broken", broken)
    with pytest.raises(ValueError):  # a failed build is not cached: the next request tries again
        cache.get_or_build("broken", broken)


@pytest.mark.parametrize("optimizer", ["newton", "scipy"])
def test_a_best_fit_on_a_bound_is_named_in_warnings(api, optimizer):
    """3 counts over a background of 10: μ̂ sits on its lower bound 0, where the likelihood's
    slope is not zero; the curvature there is no uncertainty, and the answer says so."""
    out = fit(api, model=SEED_MODEL, data=[3.0], optimizer=optimizer)
    assert out["bestfit"][0] == pytest.approx(0.0, abs=1e-9)
    assert any("mu (lower bound 0)" in w for w in out["warnings"]), out["warnings"]
    assert not any("uncorr_bkguncrt" in w for w in out["warnings"])
    assert fit(api, model=SEED_MODEL)["warnings"] == []


def test_batch_fit_equals_one_fit_per_dataset(api):
    """A list of datasets (main-bin counts or full vectors) → one row each, the same as fitting
    them one by one (and, for the example workspace, as pyhf's fits run to 1e-12)."""
    model, data, _ = oracle.workspace()
    observed = np.asarray(data)
    datasets = [observed.tolist(), (observed[:model.config.nmaindata] + 3).tolist(),
                (observed[:model.config.nmaindata] * 0.9).round().tolist()]
    out = fit(api, model=WORKSPACE_MODEL, data=datasets)
    assert out["datasets"] == 3 and out["parameters"] == model.config.par_names and all(out["converged"])
    for k, dataset in enumerate(datasets):
        one = fit(api, model=WORKSPACE_MODEL, data=dataset)
        np.testing.assert_allclose(out["bestfit"][k], one["bestfit"], rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(out["uncertainties"][k], one["uncertainties"], rtol=1e-7)
        full = np.concatenate([dataset, model.config.auxdata]) if len(dataset) == model.config.nmaindata else dataset
        expected = pyhf.infer.mle.fit(jnp.asarray(full), model, tolerance=1e-12)
        np.testing.assert_allclose(out["bestfit"][k], expected, rtol=1e-5, atol=1e-6)


def test_interpolation_codes_build_pyhfs_model(api):
    """modifier_settings reach pyhf: the example workspace with code1/code0 fits as pyhf's model
    with those codes does, not as its default one (code4/code4p), and is a model of its own in
    the cache."""
    settings = {"normsys": {"interpcode": "code1"}, "histosys": {"interpcode": "code0"}}
    ws = pyhf.Workspace(oracle.WORKSPACE)
    data = jnp.asarray(ws.data(ws.model(measurement_name="NormalMeasurement")), dtype=jnp.float64)
    coded = ws.model(measurement_name="NormalMeasurement", modifier_settings=settings)
    default = fit(api, model=WORKSPACE_MODEL, data="observed")
    out = fit(api, model={**WORKSPACE_MODEL, "modifier_settings": settings}, data="observed")
    # pyhf starts α exactly at 0, the kink of code1 and code0; the service a hair above it (see
    # minimizers.KINK_START), where the objective is differentiable.
    expected, value = pyhf.infer.mle.fit(data, coded, tolerance=1e-12, return_fitted_val=True)
    assert out["twice_nll"] == pytest.approx(float(value), rel=1e-9)
    np.testing.assert_allclose(out["bestfit"], expected, rtol=1e-5, atol=1e-6)
    assert out["twice_nll"] != pytest.approx(default["twice_nll"], rel=1e-6)
    same_as_default = fit(api, model={**WORKSPACE_MODEL, "modifier_settings": {"normsys": {"interpcode": "code4"}}},
                          data="observed")
    assert same_as_default["twice_nll"] == pytest.approx(default["twice_nll"], rel=1e-12)


def test_requests_never_wait_for_the_background_compiler():
    """With the background compiler held up, a new model's small requests still answer (the
    stepwise path) and a large one compiles the program itself; the queued compile, once let
    go, finds it built. (In this process: the entry functions as a worker runs them.)"""
    import threading

    from labcrunch_service.cache import TRACES
    from labcrunch_service.pyhf import minimizers
    from labcrunch_service.pyhf.fit import fit as fit_entry
    from labcrunch_service.pyhf.inference import hypotest
    from labcrunch_service.pyhf.schemas import FitRequest, HypotestRequest
    from labcrunch_service.settings import Limits

    release = threading.Event()

    class Stuck:
        _lock = threading.Lock()
        _scheduled = True

        def program(self):
            assert release.wait(120)

    minimizers.wait_for_background_compiles()
    minimizers._BACKGROUND.submit(Stuck())
    try:
        model = {"simple": {"kind": "correlated_background", "signal": [4.0, 6.0], "bkg": [20.0, 30.0],
                            "bkg_up": [22.0, 33.0], "bkg_down": [18.0, 28.0]}}
        request = FitRequest.model_validate({"model": model, "data": [26.0, 35.0]})
        stepwise, programs = TRACES["pyhf.stepwise"], TRACES["pyhf.newton"]
        first = fit_entry(request, Limits())
        second = fit_entry(request, Limits())  # queues its compile, behind the stuck one
        assert TRACES["pyhf.stepwise"] == stepwise + 1 and TRACES["pyhf.newton"] == programs
        np.testing.assert_array_equal(second["bestfit"], first["bestfit"])
        # 8 POI values = 19 fits: more than the stepwise path takes, so this request compiles
        hypotest(HypotestRequest.model_validate({"model": model, "data": [26.0, 35.0],
                                                 "poi_values": np.linspace(0.5, 4, 8).tolist()}), Limits())
        assert TRACES["pyhf.newton"] == programs + 1
    finally:
        release.set()
    minimizers.wait_for_background_compiles()
    assert TRACES["pyhf.newton"] == programs + 1  # the queued compile found the program built


def test_vmapped_chunks_equal_fits_one_by_one(monkeypatch):
    """On an accelerator, batches run vmapped in chunks (the last one padded): forced here on the
    CPU with chunks of 4, six datasets give the rows the one-by-one program gives."""
    from labcrunch_service.pyhf import minimizers
    from labcrunch_service.pyhf.models import model_from_spec

    cm = model_from_spec(SEED_MODEL, max_parameters=10)
    model, _ = oracle.seed()
    datasets = np.array([[n] + model.config.auxdata for n in (3.0, 9.0, 12.0, 15.0, 18.0, 30.0)])
    batch = minimizers.FitBatch.of(datasets, np.asarray(model.config.suggested_init()),
                                   np.zeros(2, dtype=bool), np.asarray(model.config.suggested_bounds()))
    looped = cm.fits.minimize(batch, workload=100)
    monkeypatch.setattr(minimizers, "vmap_batches", lambda: True)
    monkeypatch.setattr(minimizers, "chunk_size", lambda npars: 4)
    reports = []
    vmapped = cm.fits.minimize(batch, report=lambda done, total: reports.append((done, total)))
    assert reports == [(4, 6), (6, 6)]
    assert vmapped.converged.all() and vmapped.pars.shape == (6, 2)
    np.testing.assert_allclose(vmapped.pars, looped.pars, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(vmapped.hessian, looped.hessian, rtol=1e-10)
