"""Limits of the pyhf operations, checked in the HTTP process before any work is queued (cheap:
plain arithmetic on the request, no pyhf or JAX), and again by each operation's entry function."""

from __future__ import annotations

from labcrunch_service.errors import LimitExceeded
from labcrunch_service.pyhf.schemas import (
    FitRequest,
    HypotestRequest,
    ScanAxis,
    ScanRequest,
    UpperLimitRequest,
)
from labcrunch_service.settings import Limits


def is_batch(data: object) -> bool:
    """Whether a fit's ``data`` is a list of datasets (a batch fit)."""
    return isinstance(data, list) and bool(data) and isinstance(data[0], list)


def check_fit(request: FitRequest, limits: Limits) -> None:
    """413 for more ellipse pairs than limits.max_ellipse_pairs, or more datasets than
    limits.max_fit_datasets (cheap: before any work)."""
    count, maximum = len(request.ellipse_pairs or ()), limits.max_ellipse_pairs
    if count > maximum:
        raise LimitExceeded(
            f"ellipse_pairs lists {count} pairs; at most {maximum} are accepted.",
            limit="max_ellipse_pairs", maximum=maximum, value=count,
        )
    if is_batch(request.data):
        count, maximum = len(request.data), limits.max_fit_datasets
        if count > maximum:
            raise LimitExceeded(
                f"data lists {count} datasets; at most {maximum} are fitted in one request.",
                limit="max_fit_datasets", maximum=maximum, value=count,
            )


def _check_scan_size(x: ScanAxis, y: ScanAxis, gradient_points: tuple[int, int], max_points: int,
                     limit: str) -> None:
    total = x.points * y.points + gradient_points[0] * gradient_points[1]
    if total > max_points:
        raise LimitExceeded(
            f"The scan asks for {x.points}x{y.points} grid points plus {gradient_points[0]}x"
            f"{gradient_points[1]} gradient points = {total}; at most {max_points} are accepted"
            + (" (each profiled point is one fit)." if limit == "max_profile_points" else "."),
            limit=limit, maximum=max_points, value=total,
        )


def check_scan(request: ScanRequest, limits: Limits) -> None:
    """413 for more grid points than limits.max_scan_points, or, profiled, max_profile_points
    (cheap: before any work)."""
    _check_scan_size(request.x, request.y, request.gradient_points, limits.max_scan_points, "max_scan_points")
    if request.profile:
        _check_scan_size(request.x, request.y, request.gradient_points, limits.max_profile_points,
                         "max_profile_points")


def _check_count(n: int, max_points: int, where: str) -> None:
    if n > max_points:
        raise LimitExceeded(
            f"{where} holds {n} POI values; at most {max_points} are accepted.",
            limit="max_hypotest_points", maximum=max_points, value=n,
        )


def poi_values(request: HypotestRequest) -> list[float]:
    """The POI values to test (q0: [0.0] when none are given)."""
    if request.poi_values is None:
        return [0.0]
    return request.poi_values if isinstance(request.poi_values, list) else [request.poi_values]


def _check_toys(request: HypotestRequest | UpperLimitRequest, points: int, limits: Limits) -> None:
    if request.calctype != "toybased":
        return
    total, maximum = request.ntoys * points, limits.max_toys
    if total > maximum:
        raise LimitExceeded(
            f"{request.ntoys} toys at {points} POI values = {total} pseudo-experiments; at most "
            f"{maximum} are accepted (each is two fits, for each of s+b and b).",
            limit="max_toys", maximum=maximum, value=total,
        )


def check_hypotest(request: HypotestRequest, limits: Limits) -> None:
    """413 for more POI values than limits.max_hypotest_points, or more toys than
    limits.max_toys (cheap: before any work)."""
    count = len(poi_values(request))
    _check_count(count, limits.max_hypotest_points, "poi_values")
    _check_toys(request, count, limits)


def check_upper_limit(request: UpperLimitRequest, limits: Limits) -> None:
    """413 for more scan points than limits.max_hypotest_points, or more toys than
    limits.max_toys (cheap: before any work, and before a {start, stop, points} grid is made)."""
    scan = request.scan
    count = len(scan) if isinstance(scan, list) else scan.points
    _check_count(count, limits.max_hypotest_points, "scan")
    _check_toys(request, count, limits)
