"""A bounded, thread-safe least-recently-used map, for compiled functions and built models.

Building (tracing, compiling) takes long and runs outside the lock, so a hit is never held up
by somebody else's compile; two threads that miss the same key at once may both build, and the
first stored value is the one kept and returned to both.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class LruCache(Generic[V]):
    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: Hashable, value: V, *, replace: bool = False) -> V:
        """Store ``value`` (unless a concurrent twin got there first) and return what is stored."""
        with self._lock:
            if replace:
                self._items[key] = value
            else:
                value = self._items.setdefault(key, value)
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)
            return value

    def get_or_build(self, key: Hashable, build: Callable[[], V]) -> V:
        value = self.get(key)
        return value if value is not None else self.put(key, build())

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
