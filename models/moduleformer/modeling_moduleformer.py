"""ModuleFormer (MoLM) for transformers 5: a mixture of attention heads and a mixture of MLPs.

A port of IBM/ModuleFormer's modeling code (as vendored by the paper, Spico197/MoE-SFT),
written against transformers 5 (`DynamicCache`, `create_causal_mask`, output recording).
Parameter names are the original ones, so `ibm/MoLM-*` checkpoints load with
`AutoModelForCausalLM.from_pretrained` and no remote code:

    transformer.h.{l}.attn.q_proj.{experts,output_experts}.weight     attention experts (E, in, out)
    transformer.h.{l}.attn.q_proj.gate.w_gate.*                       attention router
    transformer.h.{l}.attn.{k,v}_proj.{weight,bias}                   shared keys and values
    transformer.h.{l}.mlpf.{experts,output_experts}.weight            MLP experts (E, in, out)
    transformer.h.{l}.mlpf.gate.w_gate.*                              MLP router

The original checkpoints also hold two unused buffers per layer (`attn.mask`,
`attn.cum_weight`); they are ignored on load.

Attention layout. Each token picks `k_att` attention experts. Expert e maps the token to
`n_head` query heads (width `att_hidden`) with its own matrix, and maps the attention result
back with its own output matrix; keys and values are shared by all experts (one `k_proj`,
`v_proj` of width `att_hidden`). So a token has `k_att * n_head` query heads over `n_head`
key/value heads. The attention itself is stick-breaking attention (no position embeddings):

    weight(i <- j) = sigmoid(l_ij) * prod_{j < m <= i} (1 - sigmoid(l_im)),   l_ij = q_i . k_j / sqrt(d)

No softmax kernel (sdpa, flash-attention) computes this, so attention always runs in plain
PyTorch in float32, whatever `attn_implementation` says; the setting is accepted only so that
loaders can pass the same value to every model. Masks (causal, padding, packed sequences from
restarting `position_ids`) come from transformers' `create_causal_mask`.

Routing: `ModuleFormerMLPRouter` (MLP experts) is recorded as `router_logits`, which is how
routemix's `routing.py` counts expert loads; `ModuleFormerAttentionRouter` is a sibling class
with the same computation and is not recorded.

Where this port computes differently from the original (the fixtures in tests/fixtures check that
logits, expert loads and auxiliary losses still match it on unpadded inputs):

- Auxiliary losses: padding never counts, in the attention routers' losses and the MLP routers'
  alike (from `forward(token_mask=...)`, which packed rows need, or the 2D attention mask). The
  original, as published by IBM, hands neither `q_proj.map` nor `mlpf` a mask, so padded
  positions enter its losses. Padding is weighted by 0 rather than dropped.
- Experts: one grouped matmul over all experts (`models/experts.py`) instead of splitting the
  tokens by counts read on the host: the same sums, no host sync per layer.
- Logits stay in the compute dtype; the original upcasts them to float32.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.activations import get_activation
from transformers.cache_utils import Cache, DynamicCache
from transformers.generation import GenerationMixin
from transformers.masking_utils import create_causal_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import MoeCausalLMOutputWithPast, MoeModelOutputWithPast
from transformers.modeling_utils import PreTrainedModel, slice_logits_to_keep
from transformers.utils import can_return_tuple
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.generic import merge_with_config_defaults
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from ..experts import ExpertDispatch, compute_dtype, dispatch_by_expert, grouped_linear
from .configuration_moduleformer import ModuleFormerConfig

# --------------------------------------------------------------------------------------------------
# Routers and their auxiliary losses


class ModuleFormerTopKGate(nn.Module):
    """A top-k router over `num_experts` experts (original `top_k_gating`).

    `forward(hidden_states (N, input_size))` returns `(logits (N, E), scores (N, k), indices (N, k))`:
    scores are the softmax probabilities of the chosen experts (not renormalised), indices the
    chosen experts (int64) in the order of the N tokens. In train mode with `sample_topk > 0`,
    the last `sample_topk` of the k experts are sampled from the remaining probabilities.
    """

    def __init__(
        self,
        input_size: int,
        num_experts: int,
        top_k: int,
        gate_type: str,
        gating_size: int,
        dropout: float,
        sample_topk: int,
        aux_loss_type: str,
    ):
        super().__init__()
        self.num_experts = num_experts
        self.top_k = top_k
        self.gate_type = gate_type
        self.sample_topk = sample_topk
        self.aux_loss_type = aux_loss_type
        if gate_type == "mlp":
            self.w_gate = nn.Sequential(
                nn.Linear(input_size, gating_size),
                nn.GELU(),
                nn.Dropout(dropout),
                nn.Linear(gating_size, num_experts, bias=False),
            )
        elif gate_type == "linear":
            self.w_gate = nn.Sequential(nn.Linear(input_size, num_experts, bias=False))
        elif gate_type == "gmm":
            self.w_gate = nn.Linear(input_size, gating_size, bias=False)
            self.expert_centroids = nn.Parameter(torch.empty(num_experts, gating_size))
            self.temperature = nn.Parameter(torch.zeros(1))
        else:
            raise ValueError(f"unknown gate_type {gate_type!r}")

    def router_logits(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """(N, E) logits; for "gmm", the cosine similarity to each expert centroid times exp(temperature)."""
        if self.gate_type == "gmm":
            features = F.normalize(self.w_gate(hidden_states), p=2, dim=-1)
            centroids = F.normalize(self.expert_centroids, p=2, dim=-1)
            return features @ centroids.t() * self.temperature.exp()
        return self.w_gate(hidden_states)

    def forward(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits = self.router_logits(hidden_states)
        probs = torch.softmax(logits, dim=-1)
        if self.training and self.sample_topk > 0:
            _, greedy_indices = probs.topk(self.top_k - self.sample_topk, dim=-1)
            remaining = (probs.detach() + 1e-6).scatter(1, greedy_indices, 0.0)
            sampled_indices = torch.multinomial(remaining, self.sample_topk)
            indices = torch.cat([greedy_indices, sampled_indices], dim=-1)
            scores = torch.gather(probs, 1, indices)
        else:
            scores, indices = probs.topk(self.top_k, dim=-1)
        return logits, scores, indices

    def aux_loss(self, logits: torch.Tensor, indices: torch.Tensor, token_mask: torch.Tensor | None) -> torch.Tensor:
        """The router's auxiliary loss over the real tokens (all tokens without `token_mask`). Padding is
        weighted by 0 rather than dropped, which would need the number of real tokens on the host."""
        token_weight = None if token_mask is None else token_mask.reshape(-1, 1).to(logits.device, torch.float32)
        if self.aux_loss_type == "mi":
            return mutual_information_loss(logits, token_weight)
        return switch_z_loss(logits, indices, self.num_experts, token_weight)

    def extra_repr(self) -> str:
        return f"k={self.top_k}, num_experts={self.num_experts}, gate_type={self.gate_type}"


class ModuleFormerMLPRouter(ModuleFormerTopKGate):
    """The router of a block's MLP experts; what routemix counts."""


class ModuleFormerAttentionRouter(ModuleFormerTopKGate):
    """The router of a block's attention experts (a separate class so that it is not recorded)."""


def token_mean(values: torch.Tensor, token_weight: torch.Tensor | None) -> torch.Tensor:
    """Mean over the tokens (dim 0) of `values` (N, ...), counting only tokens of weight 1 when `token_weight` (N, 1) is given."""
    if token_weight is None:
        return values.mean(0)
    weight = token_weight.reshape(-1, *([1] * (values.dim() - 1))).to(values.dtype)
    return (values * weight).sum(0) / weight.sum().clamp(min=1)


def mutual_information_loss(logits: torch.Tensor, token_weight: torch.Tensor | None = None, eps: float = 1e-8) -> torch.Tensor:
    """`-(H(expert) - H(expert | token))`: low when tokens are confidently routed but experts evenly used.

    H(expert) is the entropy of the mean routing distribution over the real tokens,
    H(expert | token) the mean entropy of each token's distribution.
    """
    probs = torch.softmax(logits, dim=-1)
    mean_probs = token_mean(probs, token_weight)
    entropy_of_mean = -(mean_probs * (mean_probs + eps).log()).sum()
    negative_conditional_entropy = token_mean((probs * torch.log_softmax(logits, dim=-1)).sum(-1), token_weight)
    return -(negative_conditional_entropy + entropy_of_mean)


def switch_z_loss(
    logits: torch.Tensor, indices: torch.Tensor, num_experts: int, token_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Switch-Transformer balance loss plus 0.1 x router z-loss (mean squared log-sum-exp of the logits), over the real tokens."""
    probs = torch.softmax(logits, dim=-1)
    selections = torch.zeros_like(probs).scatter(1, indices, 1.0)
    if token_weight is not None:
        probs, selections = probs * token_weight, selections * token_weight
    switch = num_experts * (F.normalize(probs.sum(0), p=1, dim=0) * F.normalize(selections.sum(0), p=1, dim=0)).sum()
    z_loss = token_mean(torch.logsumexp(logits, dim=-1) ** 2, token_weight)
    return switch + 0.1 * z_loss


# --------------------------------------------------------------------------------------------------
# Experts


class ModuleFormerExpertLinears(nn.Module):
    """`num_experts` bias-free linear maps held in one `(E, input_size, output_size)` weight (original `ParallelExperts`)."""

    def __init__(self, num_experts: int, input_size: int, output_size: int):
        super().__init__()
        self.num_experts = num_experts
        self.input_size = input_size
        self.output_size = output_size
        self.weight = nn.Parameter(torch.empty(num_experts, input_size, output_size))

    def forward(self, inputs: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """`inputs` grouped by expert (group ends `offsets`) -> each row times its expert's matrix, one grouped
        matmul (`models/experts.py`: no host sync, unlike the original's split by host-side counts)."""
        return grouped_linear(inputs, self.weight.to(compute_dtype(self.weight)), offsets)

    def extra_repr(self) -> str:
        return f"num_experts={self.num_experts}, input_size={self.input_size}, output_size={self.output_size}"


class ModuleFormerMixtureOfMLPs(nn.Module):
    """Each token through its `k_mlp` chosen MLP experts, outputs summed with the router scores (original `MoE`)."""

    def __init__(self, config: ModuleFormerConfig):
        super().__init__()
        self.num_experts = config.n_mlp_experts
        self.experts = ModuleFormerExpertLinears(config.n_mlp_experts, config.n_embd, config.ffd_hidden)
        self.output_experts = ModuleFormerExpertLinears(config.n_mlp_experts, config.ffd_hidden, config.n_embd)
        self.activation = get_activation(config.activation_function)
        self.gate = ModuleFormerMLPRouter(
            input_size=config.n_embd,
            num_experts=config.n_mlp_experts,
            top_k=config.k_mlp,
            gate_type=config.gate_type,
            gating_size=config.gating_size,
            dropout=config.moe_pdrop,
            sample_topk=config.sample_topk,
            aux_loss_type=config.aux_loss_type,
        )

    def forward(
        self, hidden_states: torch.Tensor, token_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, n_embd) -> ((N, n_embd), the router's auxiliary loss)."""
        logits, scores, indices = self.gate(hidden_states)
        dispatch = dispatch_by_expert(indices, scores, self.num_experts)
        hidden = self.experts(hidden_states[dispatch.token_of_slot], dispatch.offsets)
        outputs = self.output_experts(self.activation(hidden), dispatch.offsets)
        outputs = outputs * dispatch.scores[:, None]
        summed = torch.zeros_like(hidden_states).index_add(0, dispatch.token_of_slot, outputs.to(hidden_states.dtype))
        return summed, self.gate.aux_loss(logits, indices, token_mask)


class ModuleFormerMixtureOfAttentionHeads(nn.Module):
    """The query and output maps of the attention experts (original `MoE` used as `q_proj`, with `map`/`reduce`)."""

    def __init__(self, config: ModuleFormerConfig):
        super().__init__()
        self.num_experts = config.n_att_experts
        self.top_k = config.k_att
        self.experts = ModuleFormerExpertLinears(config.n_att_experts, config.n_embd, config.att_hidden)
        self.output_experts = ModuleFormerExpertLinears(config.n_att_experts, config.att_hidden, config.n_embd)
        self.gate = ModuleFormerAttentionRouter(
            input_size=config.n_embd,
            num_experts=config.n_att_experts,
            top_k=config.k_att,
            gate_type=config.gate_type,
            gating_size=config.gating_size,
            dropout=config.moe_pdrop,
            sample_topk=config.sample_topk,
            aux_loss_type=config.aux_loss_type,
        )

    def map(
        self, hidden_states: torch.Tensor, token_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ExpertDispatch, torch.Tensor]:
        """(N, n_embd) -> (queries (N, k, att_hidden), the dispatch for `reduce`, the router's auxiliary loss)."""
        logits, scores, indices = self.gate(hidden_states)
        dispatch = dispatch_by_expert(indices, scores, self.num_experts)
        sorted_queries = self.experts(hidden_states[dispatch.token_of_slot], dispatch.offsets)
        queries = sorted_queries.new_zeros(indices.numel(), sorted_queries.shape[-1])
        queries = queries.index_add(0, dispatch.slot_order, sorted_queries)
        return queries.view(*indices.shape, -1), dispatch, self.gate.aux_loss(logits, indices, token_mask)

    def reduce(self, per_slot_outputs: torch.Tensor, dispatch: ExpertDispatch) -> torch.Tensor:
        """(N, k, att_hidden) attention results -> (N, n_embd), each slot through its expert's output map, score-weighted."""
        num_tokens = per_slot_outputs.shape[0]
        sorted_inputs = per_slot_outputs.reshape(-1, per_slot_outputs.shape[-1])[dispatch.slot_order]
        outputs = self.output_experts(sorted_inputs, dispatch.offsets) * dispatch.scores[:, None]
        summed = outputs.new_zeros(num_tokens, outputs.shape[-1])
        return summed.index_add(0, dispatch.token_of_slot, outputs)


# --------------------------------------------------------------------------------------------------
# Stick-breaking attention


def stick_breaking_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, allowed: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stick-breaking attention, in float32.

    Args:
        query: (B, K, H, T, D), K expert slots of H heads for T query tokens.
        key, value: (B, H, L, D) for the L visible tokens (cache included).
        allowed: (B, 1, T, L) bool, which keys each query may see (causal, padding, packing).

    Returns:
        output (B, K, H, T, D) in the query dtype, and the attention weights (B, K, H, T, L).
        A query keeps `sigmoid(l_ij)` of the stick for key j and passes the rest to earlier
        keys: weight(i <- j) = sigmoid(l_ij) * prod over allowed m in (j, i] of sigmoid(-l_im).
    """
    dtype = query.dtype
    query, key, value = query.float(), key.float(), value.float()
    logits = torch.einsum("bkhtd,bhld->bkhtl", query, key) / math.sqrt(key.shape[-1])
    blocked = ~allowed[:, None]
    keep_here = torch.sigmoid(logits).masked_fill(blocked, 0.0)
    log_pass_on = F.logsigmoid(-logits).masked_fill(blocked, 0.0)
    # for key j: the sum of log_pass_on over the keys after j (an exclusive suffix sum)
    suffix_sums = log_pass_on.flip(-1).cumsum(-1).flip(-1)
    log_left_for_key = F.pad(suffix_sums[..., 1:], (0, 1))
    weights = keep_here * log_left_for_key.exp()
    output = torch.einsum("bkhtl,bhld->bkhtd", weights, value)
    return output.to(dtype), weights


def allowed_keys_mask(
    config: ModuleFormerConfig,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor | None,
    cache: Cache | None,
    position_ids: torch.Tensor | None,
) -> torch.Tensor:
    """(B, 1, T, L) bool mask of the keys each query may see, built by `create_causal_mask` in its sdpa format.

    Padding comes from a 2D `attention_mask`; packed sequences (several examples in one row)
    from `position_ids` that restart at 0, when there is no `attention_mask` and no cache.
    A ready 4D mask is used as given (bool: True = visible; float: 0 = visible).
    """
    mask_config = copy.copy(config)  # the mask format must not follow attn_implementation (see module docstring)
    mask_config._attn_implementation = "sdpa"
    mask = create_causal_mask(
        config=mask_config,
        inputs_embeds=inputs_embeds,
        attention_mask=attention_mask,
        cache=cache,
        position_ids=position_ids,
        allow_is_causal_skip=False,
    )
    if mask.dtype != torch.bool:
        mask = mask == 0
    return mask


class ModuleFormerAttention(nn.Module):
    """Mixture of attention heads with shared keys/values and stick-breaking attention."""

    def __init__(self, config: ModuleFormerConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.q_proj = ModuleFormerMixtureOfAttentionHeads(config)
        if config.att_hidden == config.n_embd and config.n_head == 1:
            self.k_proj = nn.Identity()
            self.v_proj = nn.Identity()
        else:
            self.k_proj = nn.Linear(config.n_embd, config.att_hidden)
            self.v_proj = nn.Linear(config.n_embd, config.att_hidden)
        self.n_head = config.n_head
        self.top_k = config.k_att
        self.head_size = config.att_hidden // config.n_head

    def forward(
        self,
        hidden_states: torch.Tensor,
        allowed: torch.Tensor,
        cache: Cache | None = None,
        token_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, T, n_embd) -> (output (B, T, n_embd), attention weights, the attention router's auxiliary loss)."""
        batch_size, sequence_length, hidden_size = hidden_states.shape
        queries, dispatch, aux_loss = self.q_proj.map(hidden_states.reshape(-1, hidden_size), token_mask)
        query = queries.view(batch_size, sequence_length, self.top_k, self.n_head, self.head_size)
        query = query.permute(0, 2, 3, 1, 4)  # (B, K, H, T, D)
        key = self.k_proj(hidden_states).view(batch_size, sequence_length, self.n_head, self.head_size)
        value = self.v_proj(hidden_states).view(batch_size, sequence_length, self.n_head, self.head_size)
        key, value = key.transpose(1, 2), value.transpose(1, 2)  # (B, H, T, D)
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx)
        output, weights = stick_breaking_attention(query, key, value, allowed)
        per_slot = output.permute(0, 3, 1, 2, 4).reshape(batch_size * sequence_length, self.top_k, -1)
        output = self.q_proj.reduce(per_slot.to(hidden_states.dtype), dispatch)
        return output.view(batch_size, sequence_length, hidden_size), weights, aux_loss


# --------------------------------------------------------------------------------------------------
# Blocks and models


class ModuleFormerBlock(GradientCheckpointingLayer):
    """Pre-norm block: mixture-of-attention-heads, then mixture-of-MLPs; returns `(hidden_states, aux_loss)`."""

    def __init__(self, config: ModuleFormerConfig, layer_idx: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)  # the original ignores layer_norm_epsilon (eps 1e-5)
        self.attn = ModuleFormerAttention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlpf = ModuleFormerMixtureOfMLPs(config)
        self.resid_dropout = nn.Dropout(config.resid_pdrop)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor,
        cache: Cache | None = None,
        use_cache: bool | None = False,
        token_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch_size, sequence_length, hidden_size = hidden_states.shape
        attn_output, _, attention_aux_loss = self.attn(self.ln_1(hidden_states), attention_mask, cache, token_mask)
        hidden_states = hidden_states + self.resid_dropout(attn_output)
        mlp_output, mlp_aux_loss = self.mlpf(self.ln_2(hidden_states).reshape(-1, hidden_size), token_mask)
        hidden_states = hidden_states + self.resid_dropout(mlp_output.view(batch_size, sequence_length, hidden_size))
        return hidden_states, attention_aux_loss + mlp_aux_loss


class ModuleFormerPreTrainedModel(PreTrainedModel):
    config_class = ModuleFormerConfig
    config: ModuleFormerConfig
    base_model_prefix = "transformer"
    supports_gradient_checkpointing = True
    _no_split_modules = ["ModuleFormerBlock"]
    # Accepted so that loaders may pass one attn_implementation to every model; ignored (stick-breaking attention).
    _supports_sdpa = True
    _supports_flash_attn = True
    _can_set_attn_implementation_cached_value = True  # set_attn_implementation after loading, too (nothing to switch)
    _keys_to_ignore_on_load_unexpected = [r"attn\.mask$", r"attn\.cum_weight$"]
    _can_record_outputs = {
        "router_logits": OutputRecorder(ModuleFormerMLPRouter, index=0),
        "attention_router_logits": OutputRecorder(ModuleFormerAttentionRouter, index=0),
        "hidden_states": ModuleFormerBlock,
        "attentions": ModuleFormerAttention,
    }

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, ModuleFormerExpertLinears):
            bound = 1.0 / module.input_size  # as the original ParallelExperts.reset_parameters
            init.uniform_(module.weight, -bound, bound)
        elif isinstance(module, ModuleFormerTopKGate) and module.gate_type == "gmm":
            init.normal_(module.expert_centroids)
            init.zeros_(module.temperature)


@dataclass
class ModuleFormerModelOutputWithPast(MoeModelOutputWithPast):
    """`MoeModelOutputWithPast` plus `aux_loss`: the routers' auxiliary losses of all blocks, summed (unweighted)."""

    aux_loss: torch.Tensor | None = None


def token_mask_from(attention_mask: torch.Tensor | None, sequence_length: int) -> torch.Tensor | None:
    """The real (non-padding) tokens of the current forward, (B, T) bool, from a 2D attention mask."""
    if attention_mask is None or attention_mask.dim() != 2:
        return None
    return attention_mask[:, -sequence_length:].bool()


class ModuleFormerModel(ModuleFormerPreTrainedModel):
    """Token embeddings (no position embeddings), blocks, final layer norm."""

    def __init__(self, config: ModuleFormerConfig):
        super().__init__(config)
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.drop = nn.Dropout(config.embd_pdrop)
        self.h = nn.ModuleList([ModuleFormerBlock(config, layer_idx) for layer_idx in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self):
        return self.wte

    def set_input_embeddings(self, new_embeddings):
        self.wte = new_embeddings

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    @merge_with_config_defaults
    @capture_outputs
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        token_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> ModuleFormerModelOutputWithPast:
        """`position_ids` are used only to find packed sequences; stick-breaking attention needs no positions.
        `token_mask` (B, T) bool marks the real tokens for the routers' auxiliary losses (default: the 2D
        `attention_mask`; packed rows have none, so their trailing padding must be named this way)."""
        if (input_ids is None) ^ (inputs_embeds is not None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.wte(input_ids)
        # The mask sees only a cache the caller passed: a fresh, empty one changes nothing but would hide
        # packed sequences from create_causal_mask (it looks for them only without a cache).
        allowed = allowed_keys_mask(self.config, inputs_embeds, attention_mask, cache, position_ids)
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        if token_mask is None:
            token_mask = token_mask_from(attention_mask, inputs_embeds.shape[1])
        hidden_states = self.drop(inputs_embeds)
        aux_loss = 0.0
        for block in self.h:
            hidden_states, block_aux_loss = block(
                hidden_states, attention_mask=allowed, cache=cache, use_cache=use_cache, token_mask=token_mask
            )
            aux_loss = aux_loss + block_aux_loss
        hidden_states = self.ln_f(hidden_states)
        return ModuleFormerModelOutputWithPast(last_hidden_state=hidden_states, cache=cache, aux_loss=aux_loss)


class ModuleFormerForCausalLM(ModuleFormerPreTrainedModel, GenerationMixin):
    """ModuleFormer with its LM head. Logits stay in the compute dtype (the original upcasts them to float32: a
    float32 copy of the full-vocabulary logits, which routemix's loss avoids by upcasting chunk by chunk).

    `aux_loss` on the output is the summed auxiliary loss of all routers (attention and MLP,
    unweighted, as the original's `transformer.aux_loss`). `loss` includes
    `config.aux_loss_weight * aux_loss` when labels are given and the weight is positive.
    """

    def __init__(self, config: ModuleFormerConfig):
        super().__init__(config)
        self.transformer = ModuleFormerModel(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.post_init()

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, new_embeddings):
        self.lm_head = new_embeddings

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        token_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> MoeCausalLMOutputWithPast:
        outputs: ModuleFormerModelOutputWithPast = self.transformer(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            token_mask=token_mask,
            **kwargs,
        )
        hidden_states = slice_logits_to_keep(outputs.last_hidden_state, logits_to_keep)
        logits = self.lm_head(hidden_states)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)
            if self.config.aux_loss_weight > 0:
                loss = loss + self.config.aux_loss_weight * outputs.aux_loss
        return MoeCausalLMOutputWithPast(
            loss=loss,
            aux_loss=outputs.aux_loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            router_logits=outputs.router_logits,
        )


__all__ = [
    "ModuleFormerAttentionRouter",
    "ModuleFormerForCausalLM",
    "ModuleFormerMLPRouter",
    "ModuleFormerModel",
    "ModuleFormerPreTrainedModel",
]
