"""Loading models: the embedded tiny MoE, any Hugging Face MoE by hub id or path, and the paper's models.

`load_model("tiny")` builds a small random-init Qwen3-MoE from a config and the byte-level BPE
tokenizer shipped in `models/tiny/` (no network). Anything else goes to
`AutoModelForCausalLM.from_pretrained`, which also knows routemix's ports of the paper's
LLaMA-MoE and ModuleFormer (MoLM) once this package is imported.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen3MoeConfig

for _port in ("llama_moe", "moduleformer"):  # registers model_type llama_moe / moduleformer with the Auto classes
    if importlib.util.find_spec(f"models.{_port}") is not None:
        importlib.import_module(f"models.{_port}")

TINY_DIR = Path(__file__).resolve().parent / "tiny"


def tiny_config(vocab_size: int, pad_token_id: int, eos_token_id: int) -> Qwen3MoeConfig:
    """The default model: 2 layers, hidden 128, 8 experts top-2 (~2M parameters), fast on a laptop CPU."""
    return Qwen3MoeConfig(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=256,
        moe_intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        num_experts=8,
        num_experts_per_tok=2,
        norm_topk_prob=True,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        pad_token_id=pad_token_id,
        eos_token_id=eos_token_id,
        bos_token_id=eos_token_id,
    )


def attention_implementation(device: torch.device) -> str:
    """flash-attn 2 on CUDA when it is installed, else PyTorch sdpa."""
    if device.type == "cuda" and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def load_model(
    name: str,
    *,
    device: torch.device = torch.device("cpu"),
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    trust_remote_code: bool = False,
    attn_implementation: str | None = None,
    experts_implementation: str | None = None,
):
    """`(model, tokenizer)` for "tiny", a local folder or a hub id."""
    attn_implementation = attn_implementation or attention_implementation(device)
    if attn_implementation == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        raise ImportError("--attn-implementation flash_attention_2 needs flash-attn: pip install -r requirements-gpu.txt")
    if name == "tiny":
        tokenizer = AutoTokenizer.from_pretrained(TINY_DIR)
        config = tiny_config(len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn_implementation)
    else:
        tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            name,
            dtype=dtype,
            attn_implementation=attn_implementation,
            trust_remote_code=trust_remote_code,
            use_safetensors=True,
        )
    if experts_implementation is not None:
        model.set_experts_implementation(experts_implementation)
    elif device.type == "cpu" and getattr(model.config, "_experts_implementation", None) == "batched_mm":
        model.set_experts_implementation("grouped_mm")  # batched_mm experts are ~60x slower on CPU
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.chat_template is None:
        raise ValueError(f"the tokenizer of {name!r} has no chat template; routemix formats every record with it")
    model.config.use_cache = False
    return model, tokenizer


def token_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of next-token cross-entropies over positions whose target label is not IGNORE_INDEX (float32)."""
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100, reduction="sum"
    )
