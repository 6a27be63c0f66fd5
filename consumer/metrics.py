"""Prometheus metrics of the consumer. Labels carry topics and stages, never report content."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

CONSUMED = Counter("cmrx_reports_consumed_total", "Report messages consumed from the input topic")
PUBLISHED = Counter("cmrx_observations_published_total", "Field Observations published (confidence >= threshold)")
BUNDLES = Counter("cmrx_bundles_published_total", "Observation Bundles published")
FOR_REVIEW = Counter("cmrx_fields_for_review_total", "Fields sent to review (confidence < threshold)")
REVIEW_TASKS = Counter("cmrx_review_tasks_total", "Review tasks published")
DEAD_LETTERED = Counter("cmrx_dead_lettered_total", "Messages sent to the dead-letter topic", ["stage"])
BACKEND_ERRORS = Counter("cmrx_backend_errors_total", "Batches retried because the backend could not answer")
TRANSACTIONS = Counter("cmrx_transactions_total", "Kafka transactions by outcome", ["outcome"])
LATENCY = Histogram(
    "cmrx_end_to_end_seconds",
    "From the input message's timestamp to the commit of its outputs",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
EXTRACTION_SECONDS = Histogram(
    "cmrx_extraction_seconds", "De-identification, extraction and scoring time per report",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120),
)
LAG = Gauge("cmrx_consumer_lag_messages", "Messages behind the high watermark", ["partition"])


def serve(port: int) -> None:
    """Expose /metrics; port 0 disables it (tests, several consumers on one host)."""
    if port:
        start_http_server(port)
