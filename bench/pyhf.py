"""pyhf: the service against plain pyhf in this process, on the same workspace.

The baseline is what a physicist would run without the service: pyhf's numpy backend, the scipy
fit, then MINUIT HESSE at the best fit for the covariance. The workspace is :func:`workspace`
with 3 channels x 5 bins: 34 parameters (the workspace the pyhf issue's prototype was measured
on). Three figures, each side by side in one run:

- warm fit + covariance: the service's compiled Newton fit vs plain pyhf with its model built,
  and vs the service's path before the Newton method (``optimizer: scipy``: pyhf's SLSQP with
  autodiff gradients, then the compiled Hessian), each the same request again;
- a new workspace's first answer (the service builds the model and answers by the stepwise path)
  vs plain pyhf's first fit of a new workspace in a process that has fitted before;
- a toy-based hypotest (1,000 toys for each of s+b and b) vs a Python loop of plain pyhf fits per
  toy (pyhf's qmu_tilde on each toy; pyhf 0.7.6's own toy calculator fails on numpy >= 2.4),
  timed on a sample of toys and scaled to the same number of toys.
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


def plain_pyhf_toys(model: pyhf.pdf.Model, data: np.ndarray, mu: float, count: int) -> float:
    """Seconds per toy of a Python loop of pyhf fits: toys drawn at the fits at μ and at 0 (s+b,
    b), each toy's q̃μ from pyhf (two fits); the mean over ``count`` toys of each kind."""
    init, bounds, fixed = model.config.suggested_init(), model.config.suggested_bounds(), model.config.suggested_fixed()
    np.random.seed(0)  # pyhf samples with numpy's global state
    samples = []
    for at in (mu, 0.0):
        pars = pyhf.infer.mle.fixed_poi_fit(at, data, model, init, bounds, fixed)
        samples.append(model.make_pdf(pars).sample((count,)))
    start = time.perf_counter()
    for toy in np.concatenate(samples):
        pyhf.infer.test_statistics.qmu_tilde(mu, toy, model, init, bounds, fixed)
    return (time.perf_counter() - start) / (2 * count)


def run(quick: bool) -> dict[str, Any]:
    pyhf.set_backend("numpy", "scipy")
    srv = server(quick)
    channels, bins = (2, 2) if quick else (3, 5)
    ntoys, baseline_toys = (20, 2) if quick else (1000, 10)
    seeds = iter(range(1000))
    spec = workspace(channels, bins, next(seeds))

    with httpx.Client(base_url=srv.url, timeout=600) as client:

        def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            response = client.post(f"/v1/pyhf/{path}", json=body)
            response.raise_for_status()
            return response.json()

        def service_fit(ws: dict[str, Any], optimizer: str = "newton") -> dict[str, Any]:
            return post("fit", {"model": {"workspace": ws}, "data": "observed", "optimizer": optimizer})

        def plain_cold(ws: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
            w = pyhf.Workspace(ws)
            model = w.model()
            return plain_pyhf_fit(model, np.asarray(w.data(model)))

        def timed(fn: Any) -> tuple[Any, float]:
            start = time.perf_counter()
            result = fn()
            return result, time.perf_counter() - start

        # Plain pyhf fits a workspace first, so that its "first fit" below is in a warm process.
        plain_cold(workspace(channels, bins, next(seeds)))
        # The answers first: uncertainties within 5 % of HESSE's (finite differences vs exact
        # derivatives), best fits within 0.05 sigma of scipy's (two minimisers stopping at their
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

        cold = {"service, new workspace: first answer": [service_cold_s],
                "plain pyhf, new workspace: first fit": [plain_cold_s]}
        for _ in range(1 if quick else 4):  # a fresh workspace per sample
            fresh = workspace(channels, bins, next(seeds))
            cold["service, new workspace: first answer"].append(timed(lambda ws=fresh: service_fit(ws))[1])
            fresh = workspace(channels, bins, next(seeds))
            cold["plain pyhf, new workspace: first fit"].append(timed(lambda ws=fresh: plain_cold(ws))[1])

        # 8 POI values are more fits than the stepwise path takes: this compiles the model's
        # whole-fit program (its compile time, plus 19 fits).
        _, compile_s = timed(lambda: post("hypotest", {"model": {"workspace": spec}, "data": "observed",
                                                       "poi_values": np.linspace(0.5, 4.0, 8).tolist()}))
        newton, scipy = service_fit(spec), service_fit(spec, "scipy")
        assert newton["twice_nll"] <= scipy["twice_nll"] + 1e-6, (newton["twice_nll"], scipy["twice_nll"])
        elapsed: dict[str, list[float]] = {"newton": [], "scipy": []}

        def service_warm(optimizer: str) -> None:
            elapsed[optimizer].append(service_fit(spec, optimizer)["elapsed_ms"] / 1e3)

        warm = alternate({"plain pyhf, warm (model built)": lambda: plain_pyhf_fit(model, data),
                          "service, warm (Newton, compiled)": lambda: service_warm("newton"),
                          "service, warm (scipy: the path before Newton)": lambda: service_warm("scipy")},
                         repeats=3 if quick else 15)
        computing = {"service, warm (Newton), compute only": summarize(elapsed["newton"]),
                     "service, warm (scipy), compute only": summarize(elapsed["scipy"])}

        toy_body = {"model": {"workspace": spec}, "data": "observed", "poi_values": [1.0],
                    "calctype": "toybased", "ntoys": ntoys, "seed": 1}
        toys, toys_s = timed(lambda: post("hypotest", toy_body))
        assert toys["warnings"] == [], toys["warnings"]
        per_toy_s = plain_pyhf_toys(model, data, 1.0, baseline_toys)
        toy_stats = {f"service, toy hypotest ({ntoys} + {ntoys} toys)": summarize([toys_s]),
                     f"plain pyhf loop, {ntoys} + {ntoys} toys (scaled from {2 * baseline_toys})":
                         summarize([per_toy_s * 2 * ntoys])}

    baseline = "plain pyhf, warm (model built)"
    stats = warm | computing | {name: summarize(ts) for name, ts in cold.items()}
    rows = ratio_rows(stats, baseline)
    cold_base = stats["plain pyhf, new workspace: first fit"]["median_s"]
    for row in rows:
        if "new workspace" in row["case"]:
            row["ratio_vs_plain_first_fit"] = row["median_ms"] / 1e3 / cold_base
    scipy_warm = stats["service, warm (scipy: the path before Newton)"]["median_s"]
    rows.append({"case": "speed-up: Newton vs the path before it (warm, HTTP included)",
                 "ratio": scipy_warm / stats["service, warm (Newton, compiled)"]["median_s"]})
    rows.append({"case": "speed-up: Newton (warm, HTTP included) vs plain pyhf (warm)",
                 "ratio": stats[baseline]["median_s"] / stats["service, warm (Newton, compiled)"]["median_s"]})
    toy_rows = ratio_rows(toy_stats, f"service, toy hypotest ({ntoys} + {ntoys} toys)")
    rows += toy_rows
    rows.append({"case": "speed-up: toy hypotest vs the pyhf loop",
                 "ratio": per_toy_s * 2 * ntoys / toys_s})
    rows.append({"case": "service: compile of the whole-fit program (8-point hypotest request)",
                 "median_ms": compile_s * 1e3})
    return {
        "title": f"pyhf: fit + covariance and toys, {channels} channels x {bins} bins, "
                 f"{len(model.config.par_names)} parameters",
        "rows": rows,
        "notes": [f"server {srv.url}; service answers checked first: bestfit within 0.05 "
                  "sigma of scipy's, uncertainties within 5 % of MINUIT HESSE; Newton's -2 ln L no "
                  "higher than SLSQP's",
                  "ratio_vs_plain...: time / the plain pyhf time (< 1: faster than plain pyhf); "
                  "speed-up rows: baseline / candidate",
                  "plain pyhf: numpy backend, scipy fit, MINUIT HESSE; service: jax backend, Newton "
                  "fit with its exact Hessian, HTTP + JSON included (compute only: the answer's elapsed_ms)",
                  "new workspace rows: a fresh workspace per sample, the first being the checked one "
                  f"({len(cold['service, new workspace: first answer'])} samples); plain pyhf had fitted "
                  "another workspace first",
                  f"toys: 1 POI value, q~mu, {ntoys} toys for each of s+b and b; the pyhf loop timed on "
                  f"{baseline_toys} + {baseline_toys} toys (qmu_tilde per toy: two fits) and scaled"],
    }
