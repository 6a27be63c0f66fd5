"""The vllm backend against a contract server that checks requests the way current vLLM does."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from cmrx.config import get_settings
from extraction.backends import BackendError
from extraction.backends.vllm import VLLMBackend
from extraction.pipeline import Extractor
from extraction.prompt import build_prompt
from schemas.catalog import FIELD_KEYS
from schemas.model_output import model_output_schema
from tests.vllm_contract_server import ContractServer

TEXT = "LV EDV 150 ml, LVEF 60 %. BP 120/80."
ANSWERS = {"LVEDV": 150.0, "LVEF": 60.0, "SBP": 120.0, "DBP": 80.0}


def settings_for(server: ContractServer, **llm):
    settings = get_settings().model_copy(deep=True)
    settings.llm.vllm_url = server.url
    settings.llm.retries = llm.pop("retries", 2)
    settings.llm.timeout_s = llm.pop("timeout_s", 5.0)
    for key, value in llm.items():
        setattr(settings.llm, key, value)
    return settings


@pytest.fixture
def server():
    with ContractServer(served=("cmrx-student", "cmr-lora-v2"), answers=ANSWERS) as srv:
        yield srv


def backend(server: ContractServer, **llm) -> VLLMBackend:
    return VLLMBackend(settings_for(server, **llm), backoff_s=0.01)


def test_request_shape_and_three_valid_samples(server):
    out = backend(server).extract(TEXT, n_samples=3)
    assert out.invalid == [] and len(out.samples) == 3
    assert out.samples[0].values["LVEDV"] == 150.0 and out.samples[0].values["HEIGHT"] is None
    assert out.samples[0].category == "CAD"
    (body,) = server.requests
    assert body["model"] == "cmrx-student"
    assert body["prompt"] == build_prompt(TEXT)
    assert body["n"] == 3 and body["temperature"] == 0.3 and body["seed"] == 0
    assert body["max_tokens"] == get_settings().llm.max_new_tokens
    assert body["structured_outputs"]["json"] == model_output_schema()
    assert body["structured_outputs"]["disable_any_whitespace"] is True
    assert not [k for k in body if k.startswith("guided_")]


def test_one_sample_is_greedy(server):
    out = backend(server).extract(TEXT, n_samples=1)
    assert len(out.samples) == 1
    assert server.requests[0]["n"] == 1 and server.requests[0]["temperature"] == 0.0


def test_contract_server_rejects_legacy_guided_json(server):
    body = {"model": "cmrx-student", "prompt": "x", "guided_json": model_output_schema()}
    response = httpx.post(server.url + "/completions", json=body)
    assert response.status_code == 400 and "legacy" in response.text


def test_retries_500_then_succeeds(server):
    server.script.extend(["500", "500"])
    out = backend(server, retries=3).extract(TEXT, n_samples=3)
    assert len(out.samples) == 3 and len(server.requests) == 3


def test_gives_up_after_retries(server):
    server.script.extend(["500"] * 10)
    with pytest.raises(BackendError, match="after 3 attempts"):
        backend(server, retries=2).extract(TEXT, n_samples=3)
    assert len(server.requests) == 3


def test_no_retry_on_4xx(server):
    with pytest.raises(BackendError, match="HTTP 404"):
        backend(server, adapter="not-served").extract(TEXT, n_samples=3)
    assert len(server.requests) == 1


def test_timeout_is_retried_then_fails(server):
    server.script.extend(["timeout", "timeout"])
    with pytest.raises(BackendError, match="ReadTimeout"):
        backend(server, retries=1, timeout_s=0.3).extract(TEXT, n_samples=3)
    assert len(server.requests) == 2


def test_connection_refused_is_a_backend_error():
    settings = get_settings().model_copy(deep=True)
    settings.llm.vllm_url = "http://127.0.0.1:9/v1"
    settings.llm.retries = 1
    with pytest.raises(BackendError, match="ConnectError"):
        VLLMBackend(settings, backoff_s=0.01).extract(TEXT, n_samples=3)


@pytest.mark.parametrize(
    ("behaviour", "error"),
    [("length", "TruncatedAnswer"), ("badjson", "InvalidModelOutput: not JSON"),
     ("schema", "InvalidModelOutput"), ("whitespace", "WhitespaceRunaway")],
)
def test_bad_answers_are_invalid_never_null(server, behaviour, error):
    server.choice_script.extend([behaviour, "ok", "ok"])
    out = backend(server).extract(TEXT, n_samples=3)
    assert len(out.samples) == 2
    assert len(out.invalid) == 1 and out.invalid[0].startswith(error)


def test_all_answers_invalid_gives_no_samples(server):
    server.choice_script.extend(["length"] * 3)
    out = backend(server).extract(TEXT, n_samples=3)
    assert out.samples == [] and len(out.invalid) == 3


def test_adapter_name_is_the_model_and_reload_switches_it(server):
    b = backend(server, adapter="cmr-lora-v2")
    b.extract(TEXT, n_samples=3)
    assert server.requests[-1]["model"] == "cmr-lora-v2"
    assert b.info().adapter == "cmr-lora-v2"
    b.reload(None)
    b.extract(TEXT, n_samples=3)
    assert server.requests[-1]["model"] == "cmrx-student"


def test_async_concurrency_is_bounded(server):
    server.delay_s = 0.1
    b = backend(server, concurrency=2)
    results = asyncio.run(b.aextract_many([TEXT] * 6, n_samples=3))
    assert all(len(r.samples) == 3 for r in results)
    assert server.max_in_flight <= 2 and len(server.requests) == 6


def test_sync_wrapper_refuses_inside_event_loop(server):
    b = backend(server)

    async def inside():
        b.extract(TEXT, n_samples=1)

    with pytest.raises(RuntimeError, match="await"):
        asyncio.run(inside())


def test_field_completion_for_the_teacher(server):
    b = backend(server)
    answers = b.complete_field(TEXT, "LVEDV", n=3, temperature=0.3, top_p=0.8)
    assert [a.value for a in answers] == [150.0] * 3 and all(a.finished for a in answers)
    body = server.requests[-1]
    assert body["top_p"] == 0.8 and body["temperature"] == 0.3
    assert list(body["structured_outputs"]["json"]["properties"]) == ["LVEDV"]
    server.choice_script.extend(["length"])
    answers = b.complete_field(TEXT, "CATEGORY", n=2, temperature=0.3, top_p=0.8)
    assert [a.finished for a in answers] == [False, True] and answers[1].value == "CAD"


def test_pipeline_through_vllm(server):
    settings = settings_for(server)
    record = Extractor(VLLMBackend(settings), settings).extract_text(TEXT)
    assert record.field("LVEDV").value == 150.0 and record.invalid_samples == 0
    names = [s.name for s in record.field("LVEDV").scores]
    assert names[:4] == ["stability", "consistency", "distribution", "grounding"]
    assert record.model.backend == "vllm"
    assert len(record.fields) == len(FIELD_KEYS)
    json.loads(record.model_dump_json())
