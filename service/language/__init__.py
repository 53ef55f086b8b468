"""The labcrunch maths language: safe expressions and small programs, run on JAX or TensorFlow.

Users send maths as text. We parse it with :mod:`ast`, walk a whitelist of node kinds, and
interpret the tree ourselves with the chosen backend's operations -- the text is never handed to
``eval``/``exec``/``compile`` or any other evaluator.

Two forms:

* **Expressions** (``compile_expression``): numbers, variables, ``+ - * / // % **``, unary ``-``,
  comparisons, ``and or not``, ``a if c else b``, calls to :data:`FUNCTIONS` and the constants
  ``pi``, ``e`` (Euler's number), ``inf``, ``nan`` (``Formula.constants`` lists those used). A
  call is a function, a bare name a variable (``gamma`` in ``1/(gamma - 1)``): free variables
  are every name but the constants, listed **sorted by name** in ``Formula.variables``, as
  Python reads them (NFKC; :func:`normalized_keys` reads a request's keys the same way).
  Expressions are traced once and are safe under ``jit``/``vmap``/``grad``: ``a if c else b``
  is ``where(c, a, b)`` (both sides are evaluated).
* **Programs** (``compile_program``): one or more ``def`` (recursion allowed) with assignment,
  augmented assignment, ``if/elif/else``, ``for i in range(...)``, ``return`` and ``pass``.
  ``Formula.variables`` are the chosen function's parameters, in declaration order. Programs run
  Python control flow on concrete values, so they are evaluated point by point (never under
  ``jit``/``vmap``): an ``if`` on a variable takes the branch of the current point, exactly like
  ``jax.grad`` of the same Python function.

Truth values: comparisons and ``and``/``or``/``not`` give ``1.0`` or ``0.0``; anything non-zero is
true. ``a // b`` is ``floor(a / b)`` and ``a % b`` is ``a - b * floor(a / b)`` on both backends.
Dotted names resolve to the same whitelist: ``jax.numpy.sqrt``, ``jnp.sqrt``, ``np.sqrt``,
``math.sqrt``, ``tf.sqrt``, ``tf.math.sqrt``, ``tf.nn.relu``, ``jax.nn.relu``, ``np.pi``, ...

Both backends compute the same values and derivatives: powers in real arithmetic, kinks with
the symmetric derivative, and the other conventions of :mod:`.ops`.

Every refusal is :class:`~labcrunch_service.errors.InvalidInput` (422) or
:class:`~labcrunch_service.errors.LimitExceeded` (413, naming the limit), with ``errors`` entries
that carry ``loc`` (relative to the field the text came in: ``["expression"]``, ``["program"]``;
the caller roots it, e.g. with :func:`labcrunch_service.errors.located`), ``msg``, ``type`` and
the 1-based ``line`` and ``column`` of the offending construct. Messages say what to write
instead (``x^2``: use ``**``; ``2x``: multiplication must be written ``2*x``; an unknown
function: the closest names).

Modules: :mod:`.vocabulary` (names, operators), :mod:`.parse` (text → tree within the size
limits), :mod:`.check` (the whitelist), :mod:`.interpreter` (evaluation), :mod:`.ops` (each
backend's operations), :mod:`.formula` (compiling, and the :class:`Formula` that runs).
"""

from labcrunch_service.language.formula import Formula, compile_expression, compile_program
from labcrunch_service.language.ops import BACKENDS, DTYPES, BackendOps, backend_ops
from labcrunch_service.language.vocabulary import (
    ALIASES,
    CONSTANTS,
    FUNCTIONS,
    MODULE_PREFIXES,
    normalized_keys,
)

__all__ = [
    "ALIASES",
    "BACKENDS",
    "CONSTANTS",
    "DTYPES",
    "FUNCTIONS",
    "MODULE_PREFIXES",
    "BackendOps",
    "Formula",
    "backend_ops",
    "compile_expression",
    "compile_program",
    "normalized_keys",
]
