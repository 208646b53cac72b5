"""Prometheus metrics of one inference service app (a registry per app, not the global one).

* ``racecast_http_requests_total{route, method, status}``: requests by route template
  (``/api/v1/races/{race_id}``, never the raw path, so ids do not explode cardinality;
  ``<unmatched>`` for unknown paths);
* ``racecast_http_request_duration_seconds{route}``: latency histogram;
* ``racecast_predictions_total{track}``: runners scored (``fundamental``; ``combined`` when
  the race had a market);
* ``racecast_feature_staleness_days``: days since the scored horse's last run (debutants
  are not observed);
* ``racecast_model_info{model_version, feature_service}``: 1 for the loaded bundle;
* ``racecast_rejected_requests_total{reason}``: 4xx answers by cause (``auth_failed``,
  ``auth_backoff``, ``rate_limited``, ``body_too_large``, ``unsupported_media_type``,
  ``limit_exceeded``, ``json_invalid``, ``invalid_request``, ``not_found``, ...);
* ``racecast_auth_failures_total``: requests with a missing or unknown API key.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["CONTENT_TYPE_LATEST", "ServiceMetrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_STALENESS_BUCKETS = (7, 14, 30, 60, 90, 180, 365, 730, 1825)


class ServiceMetrics:
    """The metrics of one app, in their own :class:`~prometheus_client.CollectorRegistry`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "racecast_http_requests",
            "HTTP requests by route template, method and status code.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "racecast_http_request_duration_seconds",
            "HTTP request latency by route template.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "racecast_predictions",
            "Runners scored, by probability track.",
            ["track"],
            registry=self.registry,
        )
        self.staleness = Histogram(
            "racecast_feature_staleness_days",
            "Days between a scored race's off and the horse's last run (debutants excluded).",
            buckets=_STALENESS_BUCKETS,
            registry=self.registry,
        )
        self.model_info = Gauge(
            "racecast_model_info",
            "The loaded inference bundle (value 1).",
            ["model_version", "feature_service"],
            registry=self.registry,
        )

        self.rejected = Counter(
            "racecast_rejected_requests",
            "Requests answered with a 4xx status, by cause.",
            ["reason"],
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "racecast_auth_failures",
            "Requests with a missing or unknown API key.",
            registry=self.registry,
        )

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one finished request and its latency."""
        self.requests.labels(route=route, method=method, status=str(status)).inc()
        self.latency.labels(route=route).observe(seconds)

    def observe_predictions(self, fundamental: int, combined: int, staleness_days: Iterable[float | None]) -> None:
        """Count scored runners and record their feature staleness."""
        self.predictions.labels(track="fundamental").inc(fundamental)
        self.predictions.labels(track="combined").inc(combined)
        for days in staleness_days:
            if days is not None:
                self.staleness.observe(days)

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)
