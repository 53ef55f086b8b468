"""Caches of compiled functions and built models, and the counters tests and metrics read.

:class:`LruCache` is a bounded, thread-safe least-recently-used map. Building a value (tracing,
compiling, building a pyhf model) takes long and runs outside the lock, so a hit is never held
up by somebody else's build; concurrent misses of one key share a single build (the others wait
for it), and a build that raises is not cached (each waiter gets the exception).

:data:`TRACES` counts how often each compiled function's Python body ran, that is how often JAX
or TensorFlow traced (so compiled) it: tests prove that a repeated request compiles nothing with
a counter, never a clock. Wrap the function with :func:`counting_traces` before jit/tf.function.

:func:`bucket_size` is the one rounding of batch sizes to compiled shapes.
"""

from __future__ import annotations

import collections
import functools
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

V = TypeVar("V")
F = TypeVar("F", bound=Callable[..., Any])

#: Every cache made with a ``setting``: :func:`configure` sizes them from the service's settings.
_SIZED: list[tuple[LruCache[Any], str]] = []

#: Every cache of this process, for :func:`stats` (metrics read hits and misses from it); a
#: list (copied atomically while a job's thread may be adding to it) of weak references.
_ALL: list[weakref.ref[LruCache[Any]]] = []

#: name → times a function registered under that name was traced (see :func:`counting_traces`).
TRACES: collections.Counter[str] = collections.Counter()


def counting_traces(name: str, fn: F) -> F:
    """``fn``, counting in ``TRACES[name]`` each time its body runs: under ``jax.jit`` or
    ``tf.function`` the body runs only while tracing, never on a cached call."""

    @functools.wraps(fn)
    def traced(*args: Any, **kwargs: Any) -> Any:
        TRACES[name] += 1
        return fn(*args, **kwargs)

    return traced  # type: ignore[return-value]


def bucket_size(count: int) -> int:
    """``count`` rounded up to 4, 5, 6, 7 or 8 × 2^k (at most 25 % padding), so that batches of
    nearby sizes share one compiled shape (a new shape costs a compile; a cached one ~ms)."""
    step = 1 << max(0, count.bit_length() - 3)
    return -(-count // step) * step


def configure(settings: Any) -> None:
    """Size every cache made with ``setting=`` from ``settings`` (a dotted attribute path, e.g.
    ``"compile_cache_size"`` or ``"limits.model_cache_size"``); once per compute process."""
    for cache, setting in _SIZED:
        value: Any = settings
        for part in setting.split("."):
            value = getattr(value, part)
        cache.resize(int(value))


def stats() -> list[dict[str, Any]]:
    """``name``, ``hits``, ``misses`` and ``size`` of every named cache of this process."""
    caches = [cache for ref in list(_ALL) if (cache := ref()) is not None and cache.name]
    return sorted(({"name": c.name, "hits": c.hits, "misses": c.misses, "size": len(c)}
                   for c in caches), key=lambda entry: entry["name"])


class LruCache(Generic[V]):
    """A bounded LRU map with single-flight builds; ``hits``/``misses`` feed tests and metrics.

    ``name`` labels the cache in metrics; ``setting`` names the setting that sizes it (see
    :func:`configure`), otherwise ``maxsize`` stays as given.
    """

    def __init__(self, maxsize: int = 256, *, name: str = "", setting: str | None = None) -> None:
        self.maxsize = max(1, maxsize)
        self.name = name
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[Hashable, V] = OrderedDict()
        self._building: dict[Hashable, Future[V]] = {}
        self._lock = threading.Lock()
        if setting is not None:
            _SIZED.append((self, setting))
        _ALL.append(weakref.ref(self))

    def resize(self, maxsize: int) -> None:
        with self._lock:
            self.maxsize = max(1, maxsize)
            self._trim()

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: Hashable, value: V) -> V:
        with self._lock:
            self._store(key, value)
            return value

    def _store(self, key: Hashable, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        self._trim()

    def _trim(self) -> None:
        while len(self._items) > self.maxsize:
            self._items.popitem(last=False)

    def get_or_build(self, key: Hashable, build: Callable[[], V]) -> V:
        """The cached value, or ``build()``'s, stored; one build per key at a time."""
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return value
            self.misses += 1
            pending = self._building.get(key)
            owner = pending is None
            if owner:
                pending = self._building[key] = Future()
        assert pending is not None
        if not owner:
            return pending.result()  # the other caller's value, or its exception
        try:
            value = build()
        except BaseException as exc:
            with self._lock:
                del self._building[key]
            pending.set_exception(exc)
            raise
        with self._lock:
            del self._building[key]
            self._store(key, value)
        pending.set_result(value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
