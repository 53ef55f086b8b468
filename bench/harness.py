"""Side-by-side timing: baseline and candidates alternate in one process, several repetitions.

Each benchmark module ``bench/<name>.py`` exposes ``run(quick: bool) -> dict`` returning
``{"title": str, "rows": [ {...}, ... ], "notes": [...]}``; ``python -m bench`` prints each as a
table and writes ``bench/results/<name>.json`` with the machine description.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version()}
    try:
        import jax

        info["jax_device"] = str(jax.devices()[0])
    except Exception:  # noqa: BLE001 - description only
        pass
    return info


def alternate(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, dict[str, float]]:
    """Time each callable ``repeats`` times, interleaved (a, b, c, a, b, c, ...), after warm-up.

    Returns per name: median, min, max seconds and the spread (max-min)/median.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
    return {name: summarize(ts) for name, ts in samples.items()}


def summarize(ts: list[float]) -> dict[str, float]:
    med = statistics.median(ts)
    return {"median_s": med, "min_s": min(ts), "max_s": max(ts),
            "spread": (max(ts) - min(ts)) / med if med else 0.0, "n": len(ts)}


def ratio_rows(stats: dict[str, dict[str, float]], baseline: str, **extra: Any) -> list[dict[str, Any]]:
    """One row per timed entry with its ratio to ``baseline`` (candidate / baseline: < 1 is faster)."""
    base = stats[baseline]["median_s"]
    return [{"case": name, "median_ms": s["median_s"] * 1e3, "spread": s["spread"],
             "ratio_vs_" + baseline: s["median_s"] / base if base else float("nan"), **extra}
            for name, s in stats.items()]


def format_table(result: dict[str, Any]) -> str:
    rows = result.get("rows", [])
    if not rows:
        return f"## {result.get('title', '')}\n(no rows)\n"
    cols = list(dict.fromkeys(k for r in rows for k in r))

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = [f"## {result.get('title', '')}", "| " + " | ".join(cols) + " |",
             "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in cols) + " |" for r in rows]
    lines += [f"- {n}" for n in result.get("notes", [])]
    return "\n".join(lines) + "\n"


def write(name: str, result: dict[str, Any], quick: bool) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}{'-quick' if quick else ''}.json"
    path.write_text(json.dumps({"machine": machine(), "quick": quick, **result}, indent=2, default=str))
    return path
