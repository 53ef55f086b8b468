"""The stopping rule of a run, one definition for both backends (numpy-like ``xp`` modules)."""

from __future__ import annotations

from typing import Any


def assess(xp: Any, x: Any, value: Any, grad: Any, lower: Any, upper: Any, tolerance: Any):
    """The stopping rule at one point, for both backends: ``(grad_norm, diverged, converged)``.

    ``xp`` is the backend's numpy (``jax.numpy`` or ``tf.experimental.numpy``). A point
    diverged when its position, value or gradient is not finite. At an active bound the part of
    the gradient pointing out of the box cannot be followed, so the norm is the projected
    gradient's; it is computed as s·‖g/s‖ with s = max|g|, which cannot overflow while every
    component is finite. ``tolerance`` < 0 means never converged.
    """
    finite = xp.isfinite(value) & xp.all(xp.isfinite(grad)) & xp.all(xp.isfinite(x))
    outward = ((x <= lower) & (grad > 0)) | ((x >= upper) & (grad < 0))
    projected = xp.where(outward, xp.zeros_like(grad), grad)
    scale = xp.max(xp.abs(projected))
    safe = xp.where(scale > 0, scale, xp.ones_like(scale))
    grad_norm = scale * xp.sqrt(xp.sum((projected / safe) ** 2))
    return grad_norm, ~finite, finite & (grad_norm <= tolerance)
