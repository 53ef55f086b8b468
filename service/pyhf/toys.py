"""Pseudo-experiments of a HistFactory model, drawn as pyhf's ``model.make_pdf(pars).sample()``
draws them, with the request's own random generator (numpy's PCG64, seeded per request).

pyhf 0.7.6's own toy calculator samples through scipy with numpy's global random state (shared
by every thread of a server) and its expected band breaks on numpy >= 2.4, so the service draws
and fits its toys itself: main-bin counts from Poisson(expected counts at ``pars``); auxiliary
data from the constraint terms at ``pars``, as pyhf builds them (Gaussian: mean the constrained
parameter, width its sigma; Poisson: rate the parameter times its factor τ, e.g. shapesys' τ =
(b/σ_b)²), in pyhf's order of the auxiliary data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp
import numpy as np


@dataclass(frozen=True)
class ConstraintLayout:
    """Where each auxiliary datum comes from: index, and (Gaussian) mean parameter and sigma or
    (Poisson) rate parameter and factor."""

    normal_data: np.ndarray  # indices into the auxiliary data
    normal_pars: np.ndarray  # parameter index of each one's mean
    normal_sigmas: np.ndarray
    poisson_data: np.ndarray
    poisson_pars: np.ndarray
    poisson_factors: np.ndarray


def constraint_layout(model: Any) -> ConstraintLayout:
    """Read from pyhf's own constraint terms (``model.constraint_model``)."""
    gaussian = model.constraint_model.constraints_gaussian
    poisson = model.constraint_model.constraints_poisson
    empty_int, empty = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    normal = (empty_int, empty_int, empty)
    if gaussian.has_pdf():
        normal = (np.asarray(gaussian.normal_data, dtype=np.int64),
                  np.asarray(gaussian.access_field, dtype=np.int64).reshape(-1),
                  np.asarray(gaussian.sigmas, dtype=np.float64).reshape(-1))
    rates = (empty_int, empty_int, empty)
    if poisson.has_pdf():
        rates = (np.asarray(poisson.poisson_data, dtype=np.int64),
                 np.asarray(poisson.access_field, dtype=np.int64).reshape(-1),
                 np.asarray(poisson.batched_factors, dtype=np.float64)[0])
    return ConstraintLayout(*normal, *rates)


def sample(model: Any, pars: np.ndarray, ntoys: int, rng: np.random.Generator) -> np.ndarray:
    """``ntoys`` full data vectors (main bins, then auxiliary data) drawn at ``pars``."""
    config = model.config
    expected = np.asarray(model.expected_actualdata(jnp.asarray(pars, dtype=jnp.float64)), dtype=np.float64)
    out = np.empty((ntoys, config.nmaindata + config.nauxdata), dtype=np.float64)
    out[:, :config.nmaindata] = rng.poisson(np.clip(expected, 0.0, None), size=(ntoys, expected.size))
    layout = constraint_layout(model)
    aux = out[:, config.nmaindata:]
    if layout.normal_data.size:
        aux[:, layout.normal_data] = rng.normal(pars[layout.normal_pars], layout.normal_sigmas,
                                                size=(ntoys, layout.normal_data.size))
    if layout.poisson_data.size:
        aux[:, layout.poisson_data] = rng.poisson(pars[layout.poisson_pars] * layout.poisson_factors,
                                                  size=(ntoys, layout.poisson_data.size))
    return out


def fresh_seed() -> int:
    """A random seed for a request that gave none (returned in its answer, to reproduce it); below
    2⁵³, so that it survives any JSON reader and can be sent back as it is."""
    return int(np.random.SeedSequence().generate_state(2, np.uint32).view(np.uint64)[0] >> np.uint64(11))
