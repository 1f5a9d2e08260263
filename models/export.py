"""The final model: what `AutoModelForCausalLM.from_pretrained(out / "final")` loads.

Written in the dtype of the checkpoint the run started from (a bf16 checkpoint stays bf16, not the
float32 that training keeps as master weights), as safetensors shards (`save_pretrained`'s
`max_shard_size`, with its index), in the checkpoint's own tensor names (transformers reverts its
load-time renames and expert fusions on save). No rank ever holds a full float32 copy: under FSDP2
the shards are gathered one tensor at a time (every rank takes part in each gather) and cast to the
export dtype on the main process at once; under DeepSpeed ZeRO-3 accelerate gathers DeepSpeed's
16-bit weights (the configs set `stage3_gather_16bit_weights_on_model_save`); one process and DDP
cast the model's own tensors one by one.
"""

from __future__ import annotations

from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType
from torch.distributed.tensor import DTensor


def full_state_dict(accelerator: Accelerator, model: torch.nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor] | None:
    """The model's full state dict on the CPU of the main process, floating-point tensors in `dtype`; None on the
    other ranks. Call it on every rank (FSDP2 and ZeRO-3 gather collectively). Tied weights stay one tensor."""
    is_main = accelerator.is_main_process
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        state = accelerator.get_state_dict(model)  # bf16: ZeRO-3's consolidated 16-bit weights, or the bf16 module's
        return {name: cast(tensor, dtype) for name, tensor in state.items()} if is_main else None
    state, done = {}, {}
    for name, tensor in accelerator.unwrap_model(model).state_dict(keep_vars=True).items():
        if id(tensor) in done:  # a tied weight: the same parameter under a second name
            state[name] = done[id(tensor)]
            continue
        full = tensor.full_tensor() if isinstance(tensor, DTensor) else tensor  # collective under FSDP2
        if is_main:
            state[name] = done[id(tensor)] = cast(full, dtype)
        del full
    return state if is_main else None


def cast(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A detached CPU copy, in `dtype` if it is floating point (integer buffers keep theirs)."""
    return tensor.detach().to(device="cpu", dtype=dtype if tensor.is_floating_point() else tensor.dtype, copy=True)


def save_final(accelerator: Accelerator, model: torch.nn.Module, tokenizer, folder: Path, dtype: torch.dtype,
               max_shard_size: str | int = "5GB") -> None:
    """Write the model (in `dtype`), its config and the tokenizer to `folder`; call it on every rank."""
    state = full_state_dict(accelerator, model, dtype)
    if accelerator.is_main_process:
        inner = accelerator.unwrap_model(model)
        inner.save_pretrained(folder, state_dict=state, max_shard_size=max_shard_size)
        # save_pretrained writes the dtype of the parameters in memory (float32 master weights); say what the files hold
        inner.config.dtype = str(dtype).removeprefix("torch.")
        inner.config.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    accelerator.wait_for_everyone()
