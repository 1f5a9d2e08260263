"""Loading models: the embedded tiny MoE, any Hugging Face MoE by hub id or path, and the paper's models.

`load_model("tiny")` loads the small Qwen3-MoE shipped in `models/tiny/`, pretrained on prose, code and
mathematics by scripts/pretrain_tiny.py, with its byte-level BPE tokenizer (no network). `"tiny-random"` is
the same config and tokenizer with random weights drawn from `seed`: routers that never learned anything,
the control for claims about specialised routing. Anything else goes to
`AutoModelForCausalLM.from_pretrained`, which also knows routemix's ports of the paper's
LLaMA-MoE and ModuleFormer (MoLM) once this package is imported.
"""

from __future__ import annotations

import importlib.util
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.utils.checkpoint import checkpoint
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, Qwen3MoeConfig

from models import attention, templates

for _port in ("llama_moe", "moduleformer"):  # registers model_type llama_moe / moduleformer with the Auto classes
    if importlib.util.find_spec(f"models.{_port}") is not None:
        importlib.import_module(f"models.{_port}")

TINY_DIR = Path(__file__).resolve().parent / "tiny"
TINY_NAMES = ("tiny", "tiny-random")
"""Model names that mean the embedded model: pretrained, and the same shape at random init."""


def tiny_config(vocab_size: int, pad_token_id: int, eos_token_id: int) -> Qwen3MoeConfig:
    """The embedded model's shape: 4 layers, hidden 192, 8 experts top-2, small enough to train on a laptop
    CPU. scripts/pretrain_tiny.py starts from it; the shipped models/tiny/config.json is what it saved."""
    return Qwen3MoeConfig(
        vocab_size=vocab_size,
        hidden_size=192,
        intermediate_size=384,
        moe_intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=6,
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


def load_tokenizer(name: str, *, chat_template: str | None = None, trust_remote_code: bool = False):
    """The tokenizer of "tiny", a local folder or a hub id, with a pad token and the chat template that
    records are rendered with: `chat_template` (a built-in name or a Jinja file, see `models.templates`)
    when given, else the tokenizer's own. Loads no weights, so that a model without a chat template
    stops here, in seconds."""
    tokenizer = AutoTokenizer.from_pretrained(TINY_DIR if name in TINY_NAMES else name, trust_remote_code=trust_remote_code)
    if chat_template is not None:
        tokenizer.chat_template = templates.resolve(chat_template, tokenizer)
        try:
            tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
        except Exception as error:  # noqa: BLE001 -- a Jinja syntax error, or the template's own raise_exception
            raise ValueError(f"--chat-template {chat_template}: the template does not render: {error}") from None
    elif tokenizer.chat_template is None:
        raise ValueError(
            f"the tokenizer of {name!r} has no chat template, and routemix renders every record with one: pass "
            f"--chat-template with a built-in ({', '.join(templates.BUILTIN)}; vicuna is the paper's format) or a Jinja file"
        )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    name: str,
    *,
    device: torch.device = torch.device("cpu"),
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    trust_remote_code: bool = False,
    attn_implementation: str | None = None,
    experts_implementation: str | None = None,
    tokenizer=None,
    training: bool = True,
):
    """`(model, tokenizer)` for "tiny", "tiny-random" (random weights from `seed`), a local folder or a hub id;
    the tokenizer (`load_tokenizer`, with the model's own chat template) is loaded first, before the weights,
    unless it is given.

    The attention kernel is `attn_implementation` or the model's default for `device`, set after loading
    by `attention.configure`, which refuses one that would be wrong on packed rows (`training`: it must
    also have a backward on `device`)."""
    if tokenizer is None:
        tokenizer = load_tokenizer(name, trust_remote_code=trust_remote_code)
    if name == "tiny-random":
        config = AutoConfig.from_pretrained(TINY_DIR)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    else:
        path = TINY_DIR if name == "tiny" else name
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            path,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            use_safetensors=True,
            **dequantized(config),
        )
    if experts_implementation is not None:
        model.set_experts_implementation(experts_implementation)
    elif device.type == "cpu" and getattr(model.config, "_experts_implementation", None) == "batched_mm":
        model.set_experts_implementation("grouped_mm")  # batched_mm copies weights per token: far slower on CPU (BENCHMARKS.md, "Experts on the CPU")
    model.config.use_cache = False
    attention.configure(model, device, attn_implementation, training)
    return model, tokenizer


def checkpoint_dtype(name: str, trust_remote_code: bool = False) -> torch.dtype:
    """The dtype a checkpoint's weights are stored in (its config's `dtype`; float32 for "tiny" or when the
    config names none). routemix exports the trained model in it."""
    if name in TINY_NAMES:
        return torch.float32
    dtype = getattr(AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code), "dtype", None)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    return dtype if isinstance(dtype, torch.dtype) else torch.float32


def dequantized(config) -> dict:
    """`from_pretrained` arguments that load a quantized checkpoint as trainable weights.

    MXFP4 (GPT-OSS's published experts) has no backward: transformers' `Mxfp4Config(dequantize=True)`
    unpacks the experts into the dtype being loaded (bf16 unless training keeps float32 masters) and
    drops the quantization config, so the final export holds plain weights. Other quantizations load as
    the checkpoint says (training them is refused by transformers or needs adapters).
    """
    quantization = getattr(config, "quantization_config", None)
    method = quantization.get("quant_method") if isinstance(quantization, dict) else getattr(quantization, "quant_method", None)
    if str(getattr(method, "value", method)) != "mxfp4":
        return {}
    from transformers import Mxfp4Config

    print("note: the checkpoint's MXFP4 experts are dequantized for training (MXFP4 has no backward); "
          "the final model is saved unquantized")
    keep = quantization.get("modules_to_not_convert") if isinstance(quantization, dict) else quantization.modules_to_not_convert
    return {"quantization_config": Mxfp4Config(modules_to_not_convert=keep, dequantize=True)}


LOSS_CHUNK_ELEMENTS = 2**26
"""Logits upcast to float32 at a time by `cross_entropy_sum` (256 MB): a chunk of rows, not all of them."""


def _chunk_cross_entropy_sum(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(logits.float(), targets, ignore_index=-100, reduction="sum")


def cross_entropy_sum(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy (float32) of `logits` (rows, vocab) against `targets` (rows,; -100 = no target).

    float32 logits go to `cross_entropy` as they are. Lower-precision logits (bf16 training) are upcast
    `LOSS_CHUNK_ELEMENTS` at a time, each chunk under activation checkpointing, so that neither the
    upcast copy nor the float32 log-softmax that cross-entropy keeps for its backward ever exists for all
    rows at once: at a 152k vocabulary that would be ~5 GB per micro-batch. The backward recomputes
    each chunk's log-softmax.
    """
    if logits.dtype == torch.float32:
        return _chunk_cross_entropy_sum(logits, targets)
    rows = max(1, LOSS_CHUNK_ELEMENTS // logits.shape[-1])
    recompute = torch.is_grad_enabled() and logits.requires_grad
    total = torch.zeros((), dtype=torch.float32, device=logits.device)
    for chunk, chunk_targets in zip(logits.split(rows), targets.split(rows)):
        if recompute:
            total = total + checkpoint(_chunk_cross_entropy_sum, chunk, chunk_targets, use_reentrant=False)
        else:
            total = total + _chunk_cross_entropy_sum(chunk, chunk_targets)
    return total


def token_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of next-token cross-entropies over positions whose target label is not IGNORE_INDEX (float32)."""
    return cross_entropy_sum(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten())


class TargetHead:
    """Runs a model's LM head only at the positions that have a next-token target.

    Most positions of a training batch carry no target (prompts, padding, each example's last
    token), yet a causal LM computes their logits and the loss throws them away. The LM head and
    its cross-entropy are the largest single cost of a small MoE's step and the largest activation
    of a large-vocabulary one. A forward pre-hook on the output embedding hands it only the hidden
    states of positions t with `labels[:, t + 1] != -100`, so inside `with head.on(labels):` the
    model returns logits of shape (targets, vocab) and `loss_sum` pairs them with their targets.
    Same loss, same gradients (up to float summation order); outside the block the hook does nothing.
    The hook sits on the module, so it also works under DDP, FSDP2 and DeepSpeed wrappers. A model
    that computes its logits without calling its output-embedding module returns full logits, and
    `loss_sum` falls back to `token_loss_sum`.
    """

    def __init__(self, model: torch.nn.Module):
        head = model.get_output_embeddings()
        if head is None:
            raise ValueError(f"{type(model).__name__} has no output embedding (LM head); routemix trains causal LMs")
        self._index: torch.Tensor | None = None
        head.register_forward_pre_hook(self._select)

    def _select(self, module: torch.nn.Module, args: tuple) -> tuple | None:
        if self._index is None:
            return None
        hidden, *rest = args
        return (hidden.flatten(0, -2).index_select(0, self._index), *rest)

    @contextmanager
    def on(self, labels: torch.Tensor, device: torch.device | str | None = None):
        """Select the positions with a target in `labels` (rows x seq_len, best still on the CPU: no device
        sync); yields the targets, on `device`, in the order of the logits the model will return."""
        targets = torch.full_like(labels, -100)
        targets[:, :-1] = labels[:, 1:]
        targets = targets.flatten()
        index = (targets != -100).nonzero().squeeze(1)
        self._index = index.to(device, non_blocking=True)
        try:
            yield targets[index].to(device, non_blocking=True)
        finally:
            self._index = None

    @staticmethod
    def loss_sum(logits: torch.Tensor, targets: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Summed next-token cross-entropy (float32) of `logits` from inside `on(labels)`."""
        if logits.dim() == 3:  # the model did not call its output-embedding module: full logits
            return token_loss_sum(logits, labels.to(logits.device))
        return cross_entropy_sum(logits, targets)
