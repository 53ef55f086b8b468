"""Plain-pyhf oracles shared by the pyhf tests (tests/service/pyhf/, tests/client/test_pyhf.py).

Built once per test session (functools.cache) so pyhf's and JAX's compilations for these model
objects are paid once, not in every file. Nothing here touches the service's code.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import pyhf

from tests.helpers import ROOT

EXAMPLE = json.loads((ROOT / "examples" / "workspace.json").read_text())
WORKSPACE = EXAMPLE["model"]["workspace"]
WORKSPACE_MODEL = {"workspace": WORKSPACE, "measurement": "NormalMeasurement"}
SEED_MODEL = {"simple": {"kind": "uncorrelated_background", "signal": [5.0], "bkg": [10.0],
                         "bkg_uncertainty": [3.5]}}


@functools.cache
def seed():
    """The seed notebook's counting experiment and its Asimov data at the suggested init."""
    model = pyhf.simplemodels.uncorrelated_background(signal=[5.0], bkg=[10.0], bkg_uncertainty=[3.5])
    data = jnp.asarray(model.expected_data(model.config.suggested_init()), dtype=jnp.float64)
    return model, data


@functools.cache
def workspace():
    """The example workspace (NormalMeasurement), its observed data and a jitted Hessian of NLL."""
    ws = pyhf.Workspace(WORKSPACE)
    model = ws.model(measurement_name="NormalMeasurement")
    data = jnp.asarray(ws.data(model), dtype=jnp.float64)
    # jit: op-by-op dispatch of an eager Hessian takes ~15 s for this model, compiled ~1 s
    hessian_nll = jax.jit(jax.hessian(lambda p: -model.logpdf(p, data)[0]))
    return model, data, hessian_nll


@contextlib.contextmanager
def tight_fits(tolerance: float = 1e-12) -> Iterator[None]:
    """pyhf's global optimizer, for the block, is SLSQP run to ``tolerance``: at its default it
    stops ~1e-5 short of the minimum, and CLs moves with it by ~1e-5 (relative), where the service's
    Newton fits are exact. (Only tests change pyhf's global state; the service never does.)"""
    backend, optimizer = pyhf.get_backend()
    pyhf.set_backend(backend, pyhf.optimize.scipy_optimizer(tolerance=tolerance))
    try:
        yield
    finally:
        pyhf.set_backend(backend, optimizer)
