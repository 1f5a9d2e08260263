"""Attention kernels on packed rows: which kernel a model gets, and what its forward needs so that
no example attends to another one packed in the same row.

routemix packs whole examples into rows and restarts `position_ids` at every example. How a
transformers-5 model turns that into "attend within your own example only" depends on the kernel:

- sdpa, eager, flex_attention: the model's mask creation (`masking_utils.create_causal_mask`) finds
  the examples in `position_ids` (`find_packed_sequence_indices`) and builds a block-diagonal causal
  mask for every row (flex_attention: a `BlockMask`). GPT-OSS calls it without `position_ids`, so its
  masks would be plain causal; `packed_inputs` builds them with the same functions and hands them in.
- flash_attention_2/3: transformers reads packing from `position_ids` only for a batch of one row
  (`modeling_flash_attention_utils._is_packed_sequence`); with more rows every example would attend to
  the examples before it in its row. `packed_inputs` passes the varlen arguments (`cu_seq_lens_q/k`,
  `max_length_q/k`) over the whole micro-batch, computed on the CPU from the batch's `position_ids`
  before it is moved, so the device never waits for them.

`configure` picks the kernel from what the model class supports (GPT-OSS has no sdpa; flash-attn
drops its attention sinks) and refuses a requested one that would be wrong, naming the flag.
"""

from __future__ import annotations

import importlib.util
import itertools

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask
from transformers.modeling_flash_attention_utils import prepare_fa_kwargs_from_position_ids

FLAG = "--attn-implementation"

MASKS_WITHOUT_POSITIONS = {"gpt_oss"}
"""Model types whose decoder builds its attention masks without `position_ids` (transformers 5.24), so
that sdpa/eager/flex_attention would let packed examples see each other; `packed_inputs` builds those
masks itself. Every family routemix supports is checked packed = separate in tests/test_attention.py."""


VARLEN = "sdpa_varlen"
"""routemix's own kernel: PyTorch sdpa over each packed example on its own (see `sdpa_varlen`)."""


def is_flash(kernel: str) -> bool:
    return kernel.startswith("flash_attention")


def takes_varlen_arguments(kernel: str) -> bool:
    return is_flash(kernel) or kernel == VARLEN


def sdpa_varlen(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                sliding_window: int | None = None, cu_seq_lens_q: torch.Tensor | None = None, **kwargs):
    """Causal attention within each packed example, by PyTorch sdpa on one example at a time.

    With a block-diagonal mask, sdpa computes every query-key pair of the whole row (S^2) and masks most of
    them away; one example at a time it computes the pairs that count (the sum of L^2 / 2 over examples)
    and takes sdpa's causal fast path. No mask is built: transformers makes none for a kernel without a
    mask function. Takes flash-attn's varlen arguments (`packed_inputs` passes them): `cu_seq_lens_q`,
    the example boundaries over the flattened micro-batch. query, key, value: (batch, heads, seq, dim).
    """
    if kwargs.get("s_aux") is not None or kwargs.get("softcap") is not None:
        raise ValueError(f"{VARLEN} has no attention sinks or softcapping")
    batch, heads, length, _dim = query.shape
    if cu_seq_lens_q is None:  # called without packed_inputs: the examples from position_ids (a device sync), or whole rows
        position_ids = kwargs.get("position_ids")
        if position_ids is None:
            position_ids = torch.arange(length, device=query.device).expand(batch, length)
        (cu_seq_lens_q, _), _ = prepare_fa_kwargs_from_position_ids(position_ids.expand(batch, length))
    flat = [x.transpose(1, 2).reshape(batch * length, x.shape[1], x.shape[3]) for x in (query, key, value)]
    bounds = cu_seq_lens_q.tolist()  # on the CPU when packed_inputs made them: no device sync
    outputs = []
    for start, end in itertools.pairwise(bounds):
        q, k, v = (x[start:end].transpose(0, 1) for x in flat)
        n, mask = end - start, None
        if sliding_window is not None and n > sliding_window:
            offset = torch.arange(n, device=q.device)
            mask = (offset[:, None] >= offset[None, :]) & (offset[:, None] - offset[None, :] < sliding_window)
        outputs.append(F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=mask is None, dropout_p=dropout if module.training else 0.0,
            scale=scaling, enable_gqa=k.shape[0] != q.shape[0]).transpose(0, 1))
    return torch.cat(outputs).view(batch, length, heads, value.shape[-1]), None


AttentionInterface.register(VARLEN, sdpa_varlen)


def supported_kernels(model: torch.nn.Module) -> list[str]:
    """The attention kernels the model's class declares, eager first."""
    kernels = ["eager"]
    if model._supports_sdpa:
        kernels.append("sdpa")
    if model._supports_flex_attn:
        kernels.append("flex_attention")
    if model._supports_flash_attn:
        kernels += ["flash_attention_2", "flash_attention_3"]
    return kernels


def has_attention_sinks(model: torch.nn.Module) -> bool:
    """GPT-OSS style learned attention sinks (`self_attn.sinks`), which sdpa cannot express and flash-attn 2
    ignores: transformers passes them only to kernels that take an `s_aux` argument, and drops them silently
    otherwise."""
    return any(name.endswith(".sinks") for name, _ in model.named_parameters())


def default_kernel(model: torch.nn.Module, device: torch.device) -> str:
    """flash-attn 2 on CUDA when it is installed and right for the model, else sdpa, else what the model has.

    On CUDA without flash-attn this keeps sdpa (a dense block-diagonal mask per row); whether flex_attention's
    block-sparse mask is faster there is what benchmarks/gpu_check.py measures (BENCHMARKS.md). On CPU,
    flex_attention has no backward (torch 2.13), so it is never the default there.
    """
    supported, sinks = supported_kernels(model), has_attention_sinks(model)
    if device.type == "cuda":
        if "flash_attention_2" in supported and not sinks and importlib.util.find_spec("flash_attn") is not None:
            return "flash_attention_2"
        for kernel in ("sdpa", "flex_attention"):
            if kernel in supported and not (kernel == "sdpa" and sinks):
                return kernel
        return "eager"
    return "sdpa" if "sdpa" in supported and not sinks else "eager"


def check_kernel(model: torch.nn.Module, kernel: str, device: torch.device, training: bool) -> None:
    """Refuse a kernel that this model cannot run right on packed rows on `device` (ValueError naming the flag)."""
    name, supported = type(model).__name__, supported_kernels(model)
    if kernel not in supported and not (kernel == VARLEN and "sdpa" in supported):  # sdpa_varlen: wherever sdpa is
        raise ValueError(f"{FLAG} {kernel}: {name} supports {', '.join(supported)}" + (f" ({VARLEN} where sdpa is)" if kernel == VARLEN else ""))
    if has_attention_sinks(model):
        if kernel in ("sdpa", VARLEN) or is_flash(kernel):
            raise ValueError(f"{FLAG} {kernel}: {name} has attention sinks, which {kernel} would drop; use "
                             + ("flex_attention or eager" if device.type == "cuda" else "eager (flex_attention runs sinks on CUDA only)"))
        if kernel == "flex_attention" and device.type != "cuda":
            raise ValueError(f"{FLAG} flex_attention: {name}'s attention sinks run under flex_attention on CUDA only; use eager on {device.type}")
    if kernel == "flex_attention" and device.type != "cuda" and training:
        raise ValueError(f"{FLAG} flex_attention trains on CUDA only (torch {torch.__version__.split('+')[0]} has no flex_attention "
                         f"backward on {device.type}); on {device.type} use it with --probe-only, or train with {default_kernel(model, device)}")
    if is_flash(kernel) and device.type != "cuda":
        raise ValueError(f"{FLAG} {kernel} runs on CUDA only")
    if kernel == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        raise ImportError(f"{FLAG} flash_attention_2 needs flash-attn: pip install -r requirements/gpu.txt")


def configure(model: torch.nn.Module, device: torch.device, requested: str | None = None, training: bool = True) -> str:
    """Set the model's attention kernel (`requested`, or `default_kernel`) after checking it; returns it."""
    kernel = requested or default_kernel(model, device)
    check_kernel(model, kernel, device, training)
    if model.config._attn_implementation != kernel:
        model.set_attn_implementation(kernel)
    return model.config._attn_implementation


def packed_inputs(model_config, batch: dict[str, torch.Tensor], device: torch.device | str, dtype: torch.dtype | None = None) -> dict:
    """The forward arguments of a packed batch from `data.collate_packed` (tensors still on the CPU), for the
    model's kernel: `input_ids`, `position_ids` and `use_cache=False`, plus what the kernel needs to keep
    examples apart. `model_config` is the (unwrapped) model's config; `dtype`, the weights' (default: the
    config's), is what eager's additive masks take."""
    inputs = {key: batch[key].to(device, non_blocking=True) for key in ("input_ids", "position_ids")}
    inputs["use_cache"] = False  # with a KV cache, transformers' mask creation ignores the packing in position_ids
    kernel = model_config._attn_implementation
    if takes_varlen_arguments(kernel):
        # every row of the micro-batch split at its examples (and its padding block), as one flattened sequence
        (cu_seq_lens, _), (max_length, _) = prepare_fa_kwargs_from_position_ids(batch["position_ids"])
        if is_flash(kernel):
            cu_seq_lens = cu_seq_lens.to(device, non_blocking=True)
        max_length = int(max_length)  # a CPU tensor: no device sync
        inputs.update(cu_seq_lens_q=cu_seq_lens, cu_seq_lens_k=cu_seq_lens, max_length_q=max_length, max_length_k=max_length)
    elif model_config.model_type in MASKS_WITHOUT_POSITIONS:
        inputs["attention_mask"] = packed_masks(model_config, inputs["position_ids"], dtype or model_config.dtype or torch.float32)
    return inputs


def packed_masks(model_config, position_ids: torch.Tensor, dtype: torch.dtype) -> dict:
    """Block-diagonal masks for every layer type, built by transformers' own mask functions from `position_ids`
    (the dict form that GPT-OSS's forward accepts in place of building its own). `dtype`: the weights' (eager's
    additive masks take it; promoted where autocast computes in another)."""
    shape_only = torch.empty((*position_ids.shape, 0), dtype=dtype, device=position_ids.device)  # read for shape, dtype, device
    # positional: the cache argument is `past_key_values` before transformers 5.2x and `cache` after
    return {
        "full_attention": create_causal_mask(model_config, shape_only, None, None, position_ids=position_ids),
        "sliding_attention": create_sliding_window_causal_mask(model_config, shape_only, None, None, position_ids=position_ids),
    }
