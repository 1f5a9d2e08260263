"""LoRA through peft: low-rank adapters on the attention and expert projections, never on a router.

    model = lora.wrap(model, tokenizer, args, routers, out, accelerator)   # after freezing the routers
    ...
    merged = lora.save_adapter_and_merge(accelerator, model, tokenizer, final)   # final/adapter/, then the merge

`--lora-target-modules all` adapts every `nn.Linear` but the LM head and the routers (attention
projections; the experts of models that keep one Linear per expert) and every fused 3-D expert
parameter of transformers-5 MoEs (`experts.gate_up_proj`, `experts.down_proj`: one tensor over all
experts), which peft adapts through `target_parameters` (one low-rank pair per expert; ModuleFormer's
expert linears too). LLaMA-MoE's experts (one 2-D parameter per expert in a ParameterList, read without
calling a module) are not adaptable by peft: there LoRA adapts the attention only. Names instead of `all`
pick modules or 3-D parameters by the end of their names (`q_proj`, `gate_up_proj`).
Routers stay frozen and are never adapted: the routing is the representation the mixture is computed
from. The routing capture and the TargetHead hooks sit on the router and LM-head modules, which peft
leaves in place inside the PeftModel, so probes run on the adapted model.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def target_names(model: nn.Module, requested: tuple[str, ...], routers: list[tuple[str, nn.Module]]) -> tuple[list[str], list[str]]:
    """`(modules, parameters)`: full names of the `nn.Linear` modules and of the 3-D expert parameters to adapt.

    Raises ValueError for a requested name that matches nothing, or that matches a router."""
    router_names = [name for name, _ in routers]
    head = model.get_output_embeddings()
    linear = [name for name, module in model.named_modules() if isinstance(module, nn.Linear) and module is not head]
    fused = [f"{owner}.{name}" for owner, module in model.named_modules()
             for name, parameter in module.named_parameters(recurse=False) if parameter.ndim == 3]

    def is_router(name: str) -> bool:  # a router, inside one, or a gate of its own (Qwen2-MoE's shared_expert_gate)
        return name.rsplit(".", 1)[-1].endswith("gate") or any(name == r or name.startswith(r + ".") for r in router_names)

    if tuple(requested) == ("all",):
        return [n for n in linear if not is_router(n)], [n for n in fused if not is_router(n)]
    modules, parameters = [], []
    for wanted in requested:
        hits_m = [n for n in linear if n == wanted or n.endswith("." + wanted)]
        hits_p = [n for n in fused if n == wanted or n.endswith("." + wanted)]
        if not hits_m and not hits_p:
            suffixes = sorted({n.rsplit(".", 1)[-1] for n in linear + fused if not is_router(n)})
            raise ValueError(f"--lora-target-modules {wanted}: matches no nn.Linear module and no 3-D expert parameter "
                             f"of {type(model).__name__} (candidates: {', '.join(suffixes)})")
        if routed := [n for n in hits_m + hits_p if is_router(n)]:
            raise ValueError(f"--lora-target-modules {wanted}: matches the router {routed[0]}; routers are never adapted "
                             "(the routing is what the mixture is computed from)")
        modules += [n for n in hits_m if n not in modules]
        parameters += [n for n in hits_p if n not in parameters]
    return modules, parameters


def adapt(model, config):
    """`(peft_model, left_out)`: the model with `config`'s adapters, and the requested targets peft did not adapt.

    peft before 0.22 rewrites the targets of model types whose layout changed in transformers 5 (its v4
    compatibility: DeepSeek-V3, ...): there, Linear targets named `gate_proj`/`up_proj`/`down_proj` (shared experts,
    dense MLPs) are taken for the fused expert parameters and dropped. They are reported rather than silently lost."""
    from peft import get_peft_model

    requested = set(config.target_modules or []) | set(config.target_parameters or [])
    model = get_peft_model(model, config)
    adapted = set(model.base_model.targeted_module_names) | set(getattr(model.base_model, "targeted_parameter_names", []))
    return model, sorted(requested - adapted)


def wrap(model, tokenizer, args, routers: list[tuple[str, nn.Module]], out: Path, accelerator):
    """The model with LoRA adapters (peft `PeftModel`), only the adapters trainable; prints the trainable count.

    The adapter names its base model so that `from_pretrained` can rebuild it: `--model` itself, or for the
    embedded `tiny` model (made from a seed, not on disk) a copy written to `<out>/base`."""
    from accelerate.utils import DistributedType
    from peft import LoraConfig

    plugin = accelerator.state.deepspeed_plugin
    if accelerator.distributed_type == DistributedType.FSDP or (plugin is not None and plugin.zero_stage == 3):
        raise ValueError("--lora-r under FSDP or DeepSpeed ZeRO-3 is not supported yet (the final merge needs the whole "
                         "model on one process); use DDP or ZeRO-1/2, whose ranks hold every weight")
    is_main = accelerator.is_main_process

    modules, parameters = target_names(model, args.lora_target_modules, routers)
    if parameters and args.lora_dropout:
        raise ValueError(f"--lora-dropout {args.lora_dropout}: peft's LoRA on fused 3-D expert parameters "
                         f"({parameters[0]}, ...) has no dropout; pass --lora-dropout 0, or leave the experts out "
                         "with --lora-target-modules (e.g. q_proj k_proj v_proj o_proj)")
    base = args.model
    from models import TINY_NAMES

    if args.model in TINY_NAMES:  # the adapter's base must be a folder a user can load it onto
        base = str((out / "base").resolve())
        if is_main:
            model.save_pretrained(base)
            tokenizer.save_pretrained(base)
    config = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout, task_type="CAUSAL_LM",
                        target_modules=modules, target_parameters=parameters or None)
    with torch.random.fork_rng(devices=[]):  # the adapters' init draws from its own seed, not the run's stream
        torch.manual_seed(args.seed)
        model, left_out = adapt(model, config)
    model.peft_config["default"].base_model_name_or_path = base
    trainable, total = model.get_nb_trainable_parameters()
    if is_main and left_out:
        print(f"warning: peft did not adapt {len(left_out)} of the requested targets: {', '.join(left_out[:6])}"
              + (", ..." if len(left_out) > 6 else ""))
    if is_main:
        print(f"LoRA r={args.lora_r} alpha={args.lora_alpha} on {len(modules)} modules and {len(parameters)} expert "
              f"parameters: {trainable:,} trainable parameters of {total:,} ({100 * trainable / total:.2f}%)")
    return model


def is_adapted(model) -> bool:
    """Whether `model` (unwrapped) is a peft model with adapters."""
    return hasattr(model, "peft_config")


def save_adapter_and_merge(accelerator, model, tokenizer, final: Path) -> nn.Module:
    """Write `final/adapter/` (the adapter and tokenizer, loadable onto its base; main process) and return the base
    model with the adapter merged in, a plain model for `models.export.save_final`. Every rank merges its own
    replica: each holds the whole model (LoRA refuses FSDP and ZeRO-3 in `wrap`)."""
    peft_model = accelerator.unwrap_model(model)
    if accelerator.is_main_process:
        peft_model.save_pretrained(final / "adapter", safe_serialization=True)
        tokenizer.save_pretrained(final / "adapter")
    return peft_model.merge_and_unload()
