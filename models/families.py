"""What differs between MoE families, in one place: the load-balancing loss over real tokens and the MoE
blocks that ZeRO-3 must fetch whole (attention kernels and masks: `models/attention.py`).

transformers' MoE models compute their load-balancing loss from a 2D `attention_mask`; routemix's
packed rows have none (the restarting `position_ids` say where examples end), so inside the
model the padding at the end of each row would be routed and counted like real tokens.
`BalanceLoss` computes the family's own loss (transformers' `load_balancing_loss_func`, or the
ports' losses) with routemix's token mask instead.
"""

from __future__ import annotations

import inspect
import sys
from contextlib import contextmanager

import torch
from torch import nn

import routing


class BalanceLoss:
    """The model family's MoE load-balancing loss over the real tokens of a batch (padding never counts).

        balance = BalanceLoss(model)                      # the unwrapped model, before accelerate wraps it
        with balance.on(token_mask) as extra:             # token_mask: (batch, seq_len) bool, True = real token
            outputs = model(input_ids=..., position_ids=..., **extra)
        aux_loss = balance.value(outputs)

    transformers families (Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE, GPT-OSS, ...): forward hooks on the
    routers keep the router logits of the forward inside `on` (not those of a recompute under
    gradient checkpointing), and the family's own `load_balancing_loss_func` weighs them with
    `token_mask` in place of an attention mask. (`output_router_logits=True` would also make the
    model compute its own loss from the attention mask, which packed rows do not have, and which
    is a mapping of masks for GPT-OSS.) routemix's ports (LLaMA-MoE, ModuleFormer) take
    `token_mask` in their forward and return `aux_loss` over it.

    Raises:
        ValueError: for a family without a load-balancing loss (DeepSeek-V3 balances its experts
            with a score-correction bias, and transformers computes no auxiliary loss for it).
    """

    def __init__(self, model: nn.Module, router_pattern: str | None = None):
        self.takes_token_mask = "token_mask" in inspect.signature(model.forward).parameters
        self.loss_function = getattr(sys.modules[type(model).__module__], "load_balancing_loss_func", None)
        self.num_experts = getattr(model, "num_experts", None)
        self.top_k = getattr(model, "num_experts_per_tok", None)
        if not self.takes_token_mask and (self.loss_function is None or self.num_experts is None or self.top_k is None):
            raise ValueError(
                f"--aux-loss-coef > 0, but {type(model).__name__} has no MoE load-balancing loss routemix can compute over "
                "real tokens (transformers defines `load_balancing_loss_func` for Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE, "
                "GPT-OSS and others; DeepSeek-V3 balances with a score-correction bias and has none). Use --aux-loss-coef 0."
            )
        self._token_mask: torch.Tensor | None = None
        self._logits: list[torch.Tensor] = []
        self._recording = False
        if not self.takes_token_mask:
            for _, router in routing.find_routers(model, router_pattern):
                router.register_forward_hook(self._record)

    def _record(self, module: nn.Module, args, output) -> None:
        if self._recording:
            self._logits.append(output[0])  # (tokens, experts): what transformers records as router_logits

    @contextmanager
    def on(self, token_mask: torch.Tensor):
        """Around one forward: yields the arguments the forward needs for the loss to leave the padding out."""
        self._token_mask, self._logits, self._recording = token_mask, [], True
        try:
            yield {"token_mask": token_mask} if self.takes_token_mask else {}
        finally:
            self._recording = False

    def value(self, outputs) -> torch.Tensor:
        """The unweighted balance loss of the forward made inside the last `on`."""
        if self.takes_token_mask:
            return outputs.aux_loss
        logits, self._logits = tuple(self._logits), []
        mask = self._token_mask.to(logits[0].device)
        # the function weighs each layer's (batch * seq_len) router rows by the (batch, seq_len) mask
        return self.loss_function(logits, self.num_experts, self.top_k, mask)


def moe_block_classes(model: nn.Module, pattern: str | None = None) -> list[type]:
    """The classes of the modules that hold the routers (the MoE blocks), for ZeRO-3's leaf modules.

    ZeRO-3 fetches a module's parameters when the module runs; inside an MoE block only the experts
    that received tokens run, and ranks whose tokens went to different experts would fetch
    different parameters and wait for each other forever. A leaf module is fetched whole. The
    blocks are the parents of the routers `routing.find_routers` finds (and of ModuleFormer's
    attention-head routers), so a port or a new family needs no list of class names.
    """
    routers = routing.find_routers(model, pattern) + routing.other_routers(model)
    classes = []
    for name, _ in routers:
        parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
        if type(parent) not in classes:
            classes.append(type(parent))
    return classes

