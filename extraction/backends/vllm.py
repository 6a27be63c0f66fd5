"""Backend 'vllm': an HTTP client for vLLM's OpenAI-compatible server (GPU workers).

One ``/v1/completions`` request per report asks for ``n`` samples at once (the server shares the
prompt's prefill between them, and its prefix cache shares ``prompt.PREFIX`` between reports).
The answer is constrained with ``structured_outputs: {"json": <schema>}``, the current vLLM
parameter; the legacy ``guided_*`` parameters are silently ignored by current vLLM, so they are
never sent. ``disable_any_whitespace`` keeps the JSON compact, and a whitespace-run check catches
any server that ignores it.

Fail closed: every choice is validated with ``parse_model_output``; a cut-off answer
(finish_reason 'length'), invalid JSON or a schema violation is counted in
``BackendOutput.invalid``, never turned into nulls. Transport errors, timeouts and 5xx are retried
with exponential backoff; a 4xx is our mistake and is not retried. A LoRA adapter is chosen by
name: vLLM serves adapters under their own model name.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Sequence
from typing import Any

import httpx

from cmrx.logs import get_logger
from extraction.backends.answers import (FieldAnswer, TruncatedAnswer, check_whitespace, parse_answers,
                                        parse_field_answers)
from extraction.backends.base import BackendError, BackendOutput, ExtractionBackend
from extraction.prompt import build_field_prompt, build_prompt, field_output_schema
from schemas.messages import ModelInfo
from schemas.model_output import model_output_schema

log = get_logger(__name__)

FIELD_MAX_TOKENS = 32  # '{"LVEDV":1234.56}' is ~10 tokens


class VLLMBackend(ExtractionBackend):
    name = "vllm"

    def __init__(self, settings=None, *, transport: httpx.AsyncBaseTransport | None = None,
                 backoff_s: float = 0.5) -> None:
        super().__init__(settings)
        self._transport = transport  # tests inject one; None = real network
        self.backoff_s = backoff_s
        self._schema = model_output_schema()
        self._loop_semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary())
        self._sync_slots = threading.BoundedSemaphore(self.settings.llm.concurrency)

    # ---- identity ------------------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        """The adapter's served name when one is set, else the base model's."""
        return self.settings.llm.adapter or self.settings.llm.vllm_model

    def info(self) -> ModelInfo:
        return ModelInfo(backend=self.name, model=self.settings.llm.vllm_model, adapter=self.settings.llm.adapter)

    def reload(self, adapter: str | None) -> None:
        """Switch to another served adapter (by name); the server loads it, we only name it."""
        self.settings = self.settings.model_copy(deep=True)
        self.settings.llm.adapter = adapter
        log.info("vllm adapter switched", adapter=adapter)

    # ---- full extraction -----------------------------------------------------------------------

    def sampling(self, n: int) -> dict[str, Any]:
        """n == 1 is the greedy answer; more are samples at the configured temperature."""
        cfg = self.settings.extraction
        return {"n": n, "temperature": cfg.temperature if n > 1 else 0.0, "top_p": cfg.top_p, "seed": cfg.seed}

    def request_body(self, prompt: str, schema: dict[str, Any], *, max_tokens: int, **sampling: Any) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "prompt": prompt,
            "max_tokens": max_tokens,
            "structured_outputs": {"json": schema, "disable_any_whitespace": True},
            **sampling,
        }

    async def aextract(self, text: str, *, n_samples: int, client: httpx.AsyncClient | None = None) -> BackendOutput:
        body = self.request_body(build_prompt(text), self._schema, max_tokens=self.settings.llm.max_new_tokens,
                                 **self.sampling(n_samples))
        output = parse_answers(await self._post(body, client), _checked_text)
        if output.invalid:
            log.warning("vllm answers rejected", rejected=len(output.invalid), valid=len(output.samples),
                        first=output.invalid[0][:200])
        return output

    async def aextract_many(self, texts: Sequence[str], *, n_samples: int) -> list[BackendOutput | BackendError]:
        """Many reports over one connection pool, at most ``llm.concurrency`` in flight."""
        async with self._client() as client:
            results = await asyncio.gather(
                *(self.aextract(t, n_samples=n_samples, client=client) for t in texts), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, BackendError):
                raise r
        return list(results)  # type: ignore[arg-type]

    def extract(self, text: str, *, n_samples: int) -> BackendOutput:
        """Sync wrapper the pipeline calls (from worker threads); bounded across threads too."""
        with self._sync_slots:
            return _run(self.aextract(text, n_samples=n_samples))

    # ---- teacher mode: one field per prompt -------------------------------------------------------

    async def acomplete_field(self, text: str, key: str, *, n: int, temperature: float, top_p: float,
                              seed: int | None = None, client: httpx.AsyncClient | None = None) -> list[FieldAnswer]:
        sampling = {"n": n, "temperature": temperature, "top_p": top_p, "seed": seed}
        body = self.request_body(build_field_prompt(text, key), field_output_schema(key), max_tokens=FIELD_MAX_TOKENS,
                                 **{k: v for k, v in sampling.items() if v is not None})
        return parse_field_answers(await self._post(body, client), key, _checked_text)

    def complete_field(self, text: str, key: str, *, n: int, temperature: float, top_p: float,
                       seed: int | None = None) -> list[FieldAnswer]:
        with self._sync_slots:
            return _run(self.acomplete_field(text, key, n=n, temperature=temperature, top_p=top_p, seed=seed))

    # ---- HTTP ------------------------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        llm = self.settings.llm
        headers = {"Authorization": f"Bearer {llm.vllm_api_key}"} if llm.vllm_api_key else {}
        return httpx.AsyncClient(base_url=llm.vllm_url.rstrip("/") + "/", timeout=httpx.Timeout(llm.timeout_s),
                                 headers=headers, transport=self._transport)

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        semaphore = self._loop_semaphores.get(loop)
        if semaphore is None:
            semaphore = self._loop_semaphores[loop] = asyncio.Semaphore(self.settings.llm.concurrency)
        return semaphore

    async def _post(self, body: dict[str, Any], client: httpx.AsyncClient | None) -> list[dict[str, Any]]:
        if client is None:
            async with self._client() as own:
                return await self._post(body, own)
        attempts = self.settings.llm.retries + 1
        last = "no attempt"
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                async with self._semaphore():
                    response = await client.post("completions", json=body)
            except httpx.TransportError as exc:  # connection refused/reset, timeouts
                last = f"{type(exc).__name__}: {exc}"
                log.warning("vllm request failed", attempt=attempt + 1, of=attempts, error=last)
                continue
            if response.status_code >= 500:
                last = f"HTTP {response.status_code}: {response.text[:200]}"
                log.warning("vllm server error", attempt=attempt + 1, of=attempts, status=response.status_code)
                continue
            if response.status_code >= 400:
                raise BackendError(f"vllm rejected the request (HTTP {response.status_code}, not retried): "
                                   f"{response.text[:300]}")
            try:
                choices = response.json()["choices"]
            except (ValueError, KeyError, TypeError) as exc:
                raise BackendError(f"vllm answered without choices: {response.text[:200]}") from exc
            return sorted(choices, key=lambda c: c.get("index", 0))
        raise BackendError(f"vllm unreachable after {attempts} attempts: {last}")


def _checked_text(choice: dict[str, Any]) -> str:
    """The choice's text, or a typed rejection when it did not finish normally."""
    finish = choice.get("finish_reason")
    text = choice.get("text") or ""
    if finish != "stop":
        raise TruncatedAnswer(f"finish_reason {finish!r} after {len(text)} characters")
    check_whitespace(text)
    return text


def _run(coro):
    """Run a coroutine from sync code; refuse inside a running loop (use the a* methods there)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    coro.close()
    raise RuntimeError("VLLMBackend sync method called inside an event loop; await the a* method instead")
