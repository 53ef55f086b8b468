"""pyhf: fit + covariance of a multi-channel workspace, the service vs plain pyhf in this process.

The baseline is what a physicist would run without the service: pyhf's numpy backend, the scipy
fit, then MINUIT HESSE at the best fit for the covariance. Cold: a workspace neither side has seen
(the service builds, traces and compiles; pyhf builds the model). Warm: the same request again
(the service's model cache and compiled functions; pyhf with the model already built).
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import iminuit
import numpy as np
import pyhf

from bench.harness import alternate, ratio_rows, server, summarize


def workspace(channels: int, bins: int, seed: int) -> dict[str, Any]:
    """A HistFactory workspace: per channel a signal (mu, lumi) and two backgrounds with normsys,
    histosys, staterror and shapesys; observations near the background-only expectation."""
    rng = np.random.default_rng(seed)
    spec_channels, observations = [], []
    for c in range(channels):
        signal = rng.uniform(1.0, 6.0, bins).round(3)
        bkg1 = rng.uniform(40.0, 80.0, bins).round(3)
        bkg2 = rng.uniform(10.0, 30.0, bins).round(3)
        spec_channels.append({"name": f"ch{c}", "samples": [
            {"name": "signal", "data": signal.tolist(), "modifiers": [
                {"name": "mu", "type": "normfactor", "data": None},
                {"name": "lumi", "type": "lumi", "data": None}]},
            {"name": "bkg1", "data": bkg1.tolist(), "modifiers": [
                {"name": "bkg1_norm", "type": "normsys", "data": {"hi": 1.05, "lo": 0.95}},
                {"name": "bkg1_shape", "type": "histosys",
                 "data": {"hi_data": (bkg1 * 1.03).round(3).tolist(), "lo_data": (bkg1 * 0.97).round(3).tolist()}},
                {"name": f"staterror_ch{c}", "type": "staterror", "data": (np.sqrt(bkg1) * 0.3).round(3).tolist()},
                {"name": "lumi", "type": "lumi", "data": None}]},
            {"name": "bkg2", "data": bkg2.tolist(), "modifiers": [
                {"name": f"bkg2_unc_ch{c}", "type": "shapesys", "data": (bkg2 * 0.1).round(3).tolist()}]},
        ]})
        observations.append({"name": f"ch{c}", "data": rng.poisson(bkg1 + bkg2 + signal).astype(float).tolist()})
    return {
        "channels": spec_channels,
        "observations": observations,
        "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": [
            {"name": "lumi", "auxdata": [1.0], "sigmas": [0.02], "bounds": [[0.9, 1.1]], "inits": [1.0]}]}}],
        "version": "1.0.0",
    }


def plain_pyhf_fit(model: pyhf.pdf.Model, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best fit (scipy) and covariance (MINUIT HESSE of -2 ln L at the best fit), numpy backend."""
    bestfit = np.asarray(pyhf.infer.mle.fit(data, model))

    def twice_nll(pars: np.ndarray) -> float:
        return float(-2.0 * model.logpdf(np.asarray(pars), data)[0])

    minuit = iminuit.Minuit(twice_nll, bestfit, name=model.config.par_names)
    minuit.errordef = iminuit.Minuit.LEAST_SQUARES  # -2 ln L: one unit up is one sigma
    minuit.limits = model.config.suggested_bounds()
    minuit.fixed = model.config.suggested_fixed()
    minuit.hesse()
    return bestfit, np.asarray(minuit.covariance)


def run(quick: bool) -> dict[str, Any]:
    pyhf.set_backend("numpy", "scipy")
    srv = server(quick)
    channels, bins = (2, 2) if quick else (3, 5)
    seeds = iter(range(1000))
    spec = workspace(channels, bins, next(seeds))

    with httpx.Client(base_url=srv.url, timeout=300) as client:

        def service_fit(ws: dict[str, Any]) -> dict[str, Any]:
            response = client.post("/v1/pyhf/fit", json={"model": {"workspace": ws}, "data": "observed"})
            response.raise_for_status()
            return response.json()

        def plain_cold(ws: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
            w = pyhf.Workspace(ws)
            model = w.model()
            return plain_pyhf_fit(model, np.asarray(w.data(model)))

        def timed(fn: Any) -> tuple[Any, float]:
            start = time.perf_counter()
            result = fn()
            return result, time.perf_counter() - start

        # The answers first: uncertainties within 5 % of HESSE's (finite differences vs
        # autodiff), best fits within 0.05 sigma of scipy's (two minimisers stopping at their
        # tolerances on flat directions). These first calls are each side's first cold sample.
        answer, service_cold_s = timed(lambda: service_fit(spec))
        (bestfit, covariance), plain_cold_s = timed(lambda: plain_cold(spec))
        w = pyhf.Workspace(spec)
        model = w.model()
        data = np.asarray(w.data(model))
        assert answer["parameters"] == model.config.par_names, (answer["parameters"], model.config.par_names)
        free = ~np.asarray(model.config.suggested_fixed())
        sigma = np.sqrt(np.diag(covariance))[free]
        np.testing.assert_allclose(np.asarray(answer["uncertainties"])[free], sigma, rtol=0.05)
        shift = (np.asarray(answer["bestfit"]) - bestfit)[free] / sigma
        assert np.abs(shift).max() < 0.05, f"best fits differ by {np.abs(shift).max():.3f} sigma"

        cold = {"service, cold (new workspace)": [service_cold_s],
                "plain pyhf, cold (build model)": [plain_cold_s]}
        for _ in range(0 if quick else 2):  # a compile is seconds: few cold samples
            fresh = workspace(channels, bins, next(seeds))
            cold["service, cold (new workspace)"].append(timed(lambda ws=fresh: service_fit(ws))[1])
            fresh = workspace(channels, bins, next(seeds))
            cold["plain pyhf, cold (build model)"].append(timed(lambda ws=fresh: plain_cold(ws))[1])
        warm = alternate({"plain pyhf, warm (model built)": lambda: plain_pyhf_fit(model, data),
                          "service, warm (cached model)": lambda: service_fit(spec)},
                         repeats=2 if quick else 5)
    stats = warm | {name: summarize(ts) for name, ts in cold.items()}
    return {
        "title": f"pyhf: fit + covariance, {channels} channels x {bins} bins, "
                 f"{len(model.config.par_names)} parameters",
        "rows": ratio_rows(stats, "plain pyhf, warm (model built)"),
        "notes": [f"server {srv.url}; service answers checked first: bestfit within 0.05 "
                  "sigma of scipy's, uncertainties within 5 % of MINUIT HESSE",
                  "ratio = time / the warm plain pyhf time: < 1, faster than plain pyhf",
                  "plain pyhf: numpy backend, scipy fit, MINUIT HESSE; service: jax backend, "
                  "autodiff Hessian, HTTP + JSON included",
                  "cold rows: a fresh workspace per sample, the first being the checked one "
                  f"({len(cold['service, cold (new workspace)'])} samples)"],
    }
