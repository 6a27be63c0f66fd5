"""Shared pytest fixtures.

Kafka: tests run against a real broker, ``KAFKA_BOOTSTRAP_SERVERS`` when set, else the local KRaft
broker of ``cmrx.kafka_local`` (started once per session through ``ensure_broker`` and stopped at the
end if this session started it and no other session still uses it; ``CMRX_KAFKA_KEEP=1`` keeps it).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap address of the session's broker.

    ``CMRX_TEST_KAFKA=testcontainers`` runs the suite against a Kafka container instead (where a
    Docker engine exists; never the only way: the default is the local KRaft broker)."""
    import os

    if os.environ.get("CMRX_TEST_KAFKA") == "testcontainers":
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    from cmrx.kafka_local import broker_session

    with broker_session() as bootstrap:
        yield bootstrap


@pytest.fixture
def kafka_topics(kafka_bootstrap: str, request: pytest.FixtureRequest) -> Iterator[object]:
    """A ``TopicSettings`` whose topics are unique to this test (so tests never read each other's
    messages), created on the broker; deleted again afterwards."""
    from cmrx.config import TopicSettings, get_settings
    from cmrx.kafka_local import delete_topics, ensure_topics, topic_names

    base = get_settings()
    suffix = f"{re.sub(r'[^A-Za-z0-9]+', '-', request.node.name)[:40].strip('-')}.{uuid.uuid4().hex[:8]}"
    topics = TopicSettings(**{k: f"{v}.{suffix}" if isinstance(v, str) else v for k, v in base.topics.model_dump().items()})
    settings = base.model_copy(update={"topics": topics})
    ensure_topics(kafka_bootstrap, settings)
    yield topics
    delete_topics(kafka_bootstrap, topic_names(settings), settings)
