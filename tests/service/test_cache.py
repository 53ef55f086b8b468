"""LruCache: builds once, evicts the least recently used, sized by a setting."""

from __future__ import annotations

from labcrunch_service.settings import Settings


def test_lru_cache_builds_once_and_evicts_the_least_recently_used():
    from labcrunch_service.cache import LruCache

    cache: LruCache[str] = LruCache(2)
    builds: list[str] = []

    def build(name: str):
        return lambda: builds.append(name) or name.upper()

    assert cache.get_or_build("a", build("a")) == "A"
    assert cache.get_or_build("a", build("a")) == "A" and builds == ["a"]
    cache.get_or_build("b", build("b"))
    cache.get("a")                       # a is now the most recent
    cache.get_or_build("c", build("c"))  # evicts b
    assert cache.get("b") is None and cache.get("a") == "A" and len(cache) == 2
    assert cache.put("a", "other") == "other" and cache.get("a") == "other"
    assert (cache.hits, cache.misses) == (1, 3)


def test_caches_made_with_a_setting_are_sized_by_it():
    from labcrunch_service.cache import LruCache, configure

    cache: LruCache[int] = LruCache(8, name="test", setting="compile_cache_size")
    for i in range(8):
        cache.put(i, i)
    try:
        configure(Settings(compile_cache_size=3, warmup=False))
        assert cache.maxsize == 3 and len(cache) == 3 and cache.get(7) == 7 and cache.get(0) is None
    finally:
        configure(Settings(warmup=False))  # every other cache back to its default size
