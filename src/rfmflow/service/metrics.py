"""Prometheus metrics, one registry per app (several apps in one process do not collide).

=====================================================  ======================================
metric                                                 meaning
=====================================================  ======================================
``rfmflow_events_ingested_total{source}``              events stored (first time seen)
``rfmflow_events_duplicate_total{source}``             events answered as duplicates
``rfmflow_events_rejected_total{source,reason}``       events rejected, by field (``amount``,
                                                       ``occurred_at``, ``size``, ...)
``rfmflow_http_request_duration_seconds{method,``      request durations (histogram); ``route``
``route,status}``                                      is the path template
=====================================================  ======================================
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from rfmflow.service.ingest import ItemResult

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.ingested = Counter(
            "rfmflow_events_ingested", "Events stored (first time seen).", ["source"], registry=self.registry
        )
        self.duplicates = Counter(
            "rfmflow_events_duplicate",
            "Events answered as duplicates (event id seen before).",
            ["source"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "rfmflow_events_rejected",
            "Events rejected, by the field at fault.",
            ["source", "reason"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "rfmflow_http_request_duration_seconds",
            "HTTP request durations.",
            ["method", "route", "status"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )

    def count_results(self, results: Iterable[ItemResult], *, source: str) -> None:
        accepted = duplicates = 0
        for r in results:
            if r.status == "accepted":
                accepted += 1
            elif r.status == "duplicate":
                duplicates += 1
            elif r.status == "rejected":
                self.reject(r.errors[0].reason if r.errors else "body", source=source)
        if accepted:
            self.ingested.labels(source).inc(accepted)
        if duplicates:
            self.duplicates.labels(source).inc(duplicates)

    def reject(self, reason: str, *, source: str, count: int = 1) -> None:
        self.rejected.labels(source, reason).inc(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)
