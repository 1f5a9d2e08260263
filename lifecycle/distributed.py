"""What differs between one process and many that accelerate configs cannot say: checks that the launch
runs what it asked for, DeepSpeed's "auto" values that need routemix's flags, `--debug-checks` (every
rank must hold the same weights and parameters), and what each engine does with precision, memory and
the optimizer step (weights dtype, accelerate's float32 outputs, gradient checkpointing, ZeRO-3 leaf
modules, `--skip-nonfinite`)."""

from __future__ import annotations

import os
from pathlib import Path
from types import MethodType

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, get_mixed_precision_context_manager, parse_flag_from_env

from lifecycle.run_folder import append_jsonl, truncate_jsonl


def check_launch(accelerator: Accelerator) -> None:
    """Stop or warn when accelerate does not run what the launch asked for."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and accelerator.num_processes == 1:
        raise SystemExit(
            f"launched as {world_size} processes, but accelerate runs each of them alone: each would train its own "
            "model and write the same files. Without GPUs, launch with ACCELERATE_USE_CPU=1 (see docs/distributed.md)."
        )
    for flag, backend in (("ACCELERATE_USE_FSDP", DistributedType.FSDP), ("ACCELERATE_USE_DEEPSPEED", DistributedType.DEEPSPEED)):
        if parse_flag_from_env(flag) and accelerator.distributed_type != backend and accelerator.is_main_process:
            print(f"warning: the accelerate config asks for {backend.value} ({flag}=true) but accelerate runs "
                  f"{accelerator.distributed_type.value} on {accelerator.device.type}: FSDP and DeepSpeed need GPUs; "
                  "parameters are replicated, not sharded")


def fill_deepspeed_auto_values(accelerator: Accelerator, micro_batch_size: int, max_grad_norm: float) -> None:
    """Fill the DeepSpeed config's "auto" micro-batch size and clipping from the command line.

    accelerate takes the micro-batch size from a DataLoader (routemix has none, and stops without it)
    and sets "auto" clipping to 1.0; DeepSpeed clips inside its own step, so `--max-grad-norm` must
    reach it here. Nothing to do without DeepSpeed.
    """
    if accelerator.state.deepspeed_plugin is None:
        return
    config = accelerator.state.deepspeed_plugin.deepspeed_config
    for key, value in (("train_micro_batch_size_per_gpu", micro_batch_size), ("gradient_clipping", max_grad_norm)):
        if config.get(key) == "auto":
            config[key] = value


def assert_same_on_all_ranks(accelerator: Accelerator, what: str, values: torch.Tensor, labels: list[str]) -> None:
    """Stop every rank unless all ranks hold bitwise the same `values` (one number per label)."""
    everyone = accelerator.gather(values.double().to(accelerator.device)[None]).cpu()  # (ranks, n)
    differ = (everyone != everyone[0]).any(0).nonzero().flatten().tolist()
    if differ:
        shown = "; ".join(f"{labels[i]}: {everyone[:, i].tolist()}" for i in differ[:5])
        raise RuntimeError(f"--debug-checks: ranks disagree on {what} ({len(differ)} of {len(labels)} values; by rank) {shown}")


class DebugChecks:
    """`--debug-checks`: stop as soon as ranks drift apart, and log each rank's view to
    `<out>/debug/rank_<r>.jsonl`. Every method does nothing when the checks are off.

    A resumed run (`step` > 0) drops the lines logged after its checkpoint: it redoes those steps.
    With a `sampler`, every step also logs the examples this rank drew for it (`draws`).
    """

    def __init__(self, accelerator: Accelerator, out: Path, enabled: bool, step: int = 0, sampler=None):
        self.accelerator, self.enabled, self.sampler = accelerator, enabled, sampler
        self.log = out / "debug" / f"rank_{accelerator.process_index}.jsonl"
        if enabled:
            self.log.parent.mkdir(parents=True, exist_ok=True)
            truncate_jsonl(self.log, step)
            if sampler is not None:
                sampler.recorded = []

    def draws(self, step: int) -> None:
        """The examples this rank drew for optimizer step `step`, as `[dataset, index, pass, place in the sequence]`,
        in the order drawn (some wait in the packing for a later step): all ranks' logs together show each pass's
        examples once."""
        if not self.enabled or self.sampler is None:
            return
        append_jsonl(self.log, {"step": step, "drawn": self.sampler.recorded})
        self.sampler.recorded = []

    def weights(self, step: int, names: list[str], weights: list[float], rank_histograms: torch.Tensor) -> None:
        """After a weight update: every rank must hold bitwise the same sampling weights."""
        if not self.enabled:
            return
        assert_same_on_all_ranks(self.accelerator, f"the sampling weights at step {step}",
                                 torch.tensor(weights, dtype=torch.float64), names)
        append_jsonl(self.log, {"step": step, "probe_histograms": rank_histograms.tolist(), "weights": weights})

    def parameters(self, model, step: int) -> None:
        """After an optimizer step: every rank must hold the same parameters (compared by their float64 sums and
        sums of squares). Skipped where ranks hold only shards (FSDP, ZeRO-3)."""
        if not self.enabled:
            return
        accelerator = self.accelerator
        plugin = accelerator.state.deepspeed_plugin
        if accelerator.distributed_type == DistributedType.FSDP or (plugin is not None and plugin.zero_stage == 3):
            return
        named = list(model.named_parameters())
        checksums = torch.stack([torch.stack([p.detach().double().sum(), p.detach().double().square().sum()])
                                 for _, p in named])
        labels = [f"{name} ({kind})" for name, _ in named for kind in ("sum", "sum of squares")]
        assert_same_on_all_ranks(accelerator, f"the parameters after step {step}", checksums.flatten(), labels)
        append_jsonl(self.log, {"step": step, "parameter_checksum": float(checksums.sum())})


# --------------------------------------------------------------------------------------------------
# Precision and memory: what each engine keeps, and what routemix must not add


def weights_dtype(accelerator: Accelerator, bf16: bool, checkpoint_dtype: torch.dtype) -> torch.dtype:
    """The dtype to load the weights in, so that the optimizer still updates float32 master weights.

    - No `--bf16`: float32.
    - One process or DDP: float32 under bf16 autocast. torch's AdamW updates the parameters in their own
      dtype: over bf16 weights an update below half a bf16 spacing of the weight rounds away (at lr 2e-5,
      Adam moves a weight of 0.01 by ~2e-5, half its bf16 spacing is 3.9e-5), and training silently stalls.
    - DeepSpeed with bf16: bf16. DeepSpeed runs the module in bf16 anyway and keeps float32 master
      weights (and optimizer state) in its ZeRO/bf16 optimizer; a float32 load only doubles host memory.
    - FSDP2 with bf16: the checkpoint's own dtype when that is bf16, else float32. accelerate upcasts the
      trainable parameters to float32 before sharding (the shards are the float32 master weights) and
      computes in bf16 through FSDP2's MixedPrecisionPolicy; loading a float32 checkpoint in bf16 would
      round the masters' starting values.
    """
    if not bf16:
        return torch.float32
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        return torch.bfloat16
    if accelerator.distributed_type == DistributedType.FSDP and checkpoint_dtype == torch.bfloat16:
        return torch.bfloat16
    return torch.float32


def drop_fp32_output_conversion(accelerator: Accelerator, model: torch.nn.Module) -> None:
    """Keep a prepared model's bf16 autocast but not accelerate's float32 copy of its outputs.

    With bf16 mixed precision on one process or DDP, `accelerator.prepare` wraps the model's forward in
    autocast and in a conversion of every bf16 output to float32: a float32 copy of the (targets x vocab)
    logits, ~5 GB per micro-batch at a 152k vocabulary, alive while the backward runs. The loss
    (`models.cross_entropy_sum`) upcasts the logits chunk by chunk instead. FSDP2 and DeepSpeed do not
    wrap the forward this way; there this does nothing.
    """
    inner = accelerator.unwrap_model(model)  # keep_fp32_wrapper=True: leaves the forward alone
    original = inner.__dict__.get("_original_forward")
    if not accelerator.native_amp or original is None:
        return
    autocast = get_mixed_precision_context_manager(accelerator.native_amp, accelerator.autocast_handler)
    inner.forward = MethodType(autocast(original.__func__), inner)


def enable_gradient_checkpointing(accelerator: Accelerator, model: torch.nn.Module) -> None:
    """`--gradient-checkpointing`: transformers' own activation checkpointing of every decoder layer, on every engine.

    transformers checkpoints each layer's `forward` (non-reentrant, random state preserved), so FSDP2's
    hooks on the layer stay outside the checkpoint and the recompute all-gathers nothing twice; DeepSpeed
    and DDP need nothing else. accelerate's own FSDP activation checkpointing (`fsdp_activation_checkpointing`
    in the config) is refused: it wraps layers with `preserve_rng_state=False`, so the recompute would draw
    other gate noise (LLaMA-MoE), other sampled experts (ModuleFormer) and other dropout masks than the
    forward, and the gradients would belong to another forward than the loss.
    """
    fsdp = getattr(accelerator.state, "fsdp_plugin", None)  # set only under FSDP
    if fsdp is not None and fsdp.activation_checkpointing:
        raise SystemExit(
            "the accelerate config sets fsdp_activation_checkpointing: accelerate's checkpoint wrapper does not preserve the "
            "random state, so a recompute would route and drop out differently from the forward (wrong gradients for "
            "LLaMA-MoE's noisy gate, ModuleFormer's sampled experts, any dropout). Set it to false and pass "
            "--gradient-checkpointing (transformers' own, which preserves it)."
        )
    if hasattr(model, "activation_checkpointing_enable"):  # transformers 5.2x: non-reentrant by default
        model.activation_checkpointing_enable()
    else:  # older transformers name it gradient_checkpointing (and default to the reentrant kind)
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


# --------------------------------------------------------------------------------------------------
# DeepSpeed


def set_zero3_leaf_modules(accelerator: Accelerator, block_classes: list[type]) -> None:
    """Under ZeRO-3, have accelerate mark the MoE blocks as leaf modules (`deepspeed.utils.set_z3_leaf_modules`
    in `prepare`), so that each block's router and experts are fetched together; without it ranks that route
    to different experts fetch different parameters and hang. `block_classes` come from
    `models.families.moe_block_classes`. A list given on the command line (`--deepspeed_moe_layer_cls_names`)
    is kept."""
    plugin = accelerator.state.deepspeed_plugin
    if plugin is None or plugin.zero_stage != 3:
        return
    if plugin.transformer_moe_cls_names is None:
        plugin.transformer_moe_cls_names = os.environ.get("ACCELERATE_DEEPSPEED_MOE_LAYER_CLS_NAMES") or ",".join(
            block.__name__ for block in block_classes)


def optimizer_steps_in_backward(accelerator: Accelerator) -> bool:
    """Under DeepSpeed the optimizer step runs inside `accelerator.backward` (the engine steps when gradients
    synchronise), before routemix sees the gradient norm."""
    return accelerator.distributed_type == DistributedType.DEEPSPEED


def check_skip_nonfinite(accelerator: Accelerator, skip_nonfinite: int) -> None:
    """Refuse `--skip-nonfinite` where a non-finite step cannot be skipped (DeepSpeed)."""
    if skip_nonfinite > 0 and optimizer_steps_in_backward(accelerator):
        raise SystemExit(
            f"--skip-nonfinite {skip_nonfinite} cannot work under DeepSpeed: its optimizer step runs inside "
            "accelerator.backward, before the gradient norm is known, so a non-finite step has already updated the "
            "model when routemix sees it. Use --skip-nonfinite 0 (stop at the first one), or DDP/FSDP2."
        )


def nonfinite_outcome(accelerator: Accelerator) -> str:
    """What happened to the model when a non-finite step stops the run (for the stop message)."""
    if optimizer_steps_in_backward(accelerator):
        return "stopped without saving; DeepSpeed's optimizer step had already run inside the backward, so the model in memory took it"
    return "stopped without updating the model or saving"
