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

import torch
from torch import nn

import routing


class BalanceLoss:
    """The model family's MoE load-balancing loss over the real tokens of a batch (padding never counts).

        balance = BalanceLoss(model)                       # the unwrapped model, before accelerate wraps it
        outputs = model(input_ids=..., position_ids=..., **balance.forward_kwargs(token_mask))
        aux_loss = balance(outputs, token_mask)

    transformers families (Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE, GPT-OSS, ...): the router logits
    the model records (`output_router_logits=True`) go through the family's own
    `load_balancing_loss_func` with `token_mask` in place of an attention mask. routemix's ports
    (LLaMA-MoE, ModuleFormer) take `token_mask` in their forward and return `aux_loss` over it.

    Raises:
        ValueError: for a family without a load-balancing loss (DeepSeek-V3 balances its experts
            with a score-correction bias, and transformers computes no auxiliary loss for it).
    """

    def __init__(self, model: nn.Module):
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

    def forward_kwargs(self, token_mask: torch.Tensor) -> dict:
        """What the model's forward needs to be given so that the loss can leave the padding out."""
        return {"token_mask": token_mask} if self.takes_token_mask else {"output_router_logits": True}

    def __call__(self, outputs, token_mask: torch.Tensor) -> torch.Tensor:
        """The unweighted balance loss of a forward made with `forward_kwargs(token_mask)`."""
        if self.takes_token_mask:
            return outputs.aux_loss
        # (batch, seq_len) mask: the function weights each layer's (batch * seq_len) router rows by it
        return self.loss_function(outputs.router_logits, self.num_experts, self.top_k, token_mask)


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

