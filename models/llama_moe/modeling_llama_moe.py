"""LLaMA-MoE v1 for transformers 5: LLaMA-2 attention plus a noisy top-k MoE feed-forward.

A port of the modeling code of pjlab-sys4nlp/llama-moe (as vendored by the paper,
Spico197/MoE-SFT), written against transformers 5 (`DynamicCache`, `create_causal_mask`,
`ALL_ATTENTION_FUNCTIONS`, output recording). Parameter names are the original ones, so the
published checkpoints load with `AutoModelForCausalLM.from_pretrained` and no remote code:

    model.layers.{l}.mlp.gate.gate_network.{0,2}.weight      ("mlp" gate: Linear-Tanh-Linear)
    model.layers.{l}.mlp.gate.gate_network.weight            ("linear" gate)
    model.layers.{l}.mlp.gate.weight_noise.weight            (noise scale, when gate_add_noise)
    model.layers.{l}.mlp.calculator.experts.weight_{gate,up,down}.{e}

One MoE layer, for the N = B*T tokens of a batch (flattened row-major):

    logits = gate_network(x) [+ N(0, 1) * (softplus(weight_noise(x)) + eps) in train mode]
    indices, top-k logits = topk(logits, k);  scores = softmax(top-k logits)
    y = sum over the k chosen experts e of  expert_e(x) * score * score_scale_factor
    balance loss = cv^2(importance) + cv^2(load)   (times gate_balance_loss_weight in the LM loss)

The gate (`LlamaMoETopKGate`) returns `(logits, scores, indices)` and is recorded as
`router_logits`, which is how routemix's `routing.py` finds it.

Where this port computes differently from the original (the fixtures in tests/fixtures check that
logits and expert loads still match it):

- Experts: the original loops over the experts that received tokens, with their counts read on
  the host. Here the (token, slot) choices are sorted by expert on the device and one grouped
  matmul per projection runs all experts (`models/experts.py`; uneven experts zero-padded to a
  common width): the same sums in another order, no host sync per layer, and every expert's
  parameters take part in every forward (unused ones get zero gradients), which ZeRO-3 and FSDP2
  need when ranks route differently.
- Balance loss: over the real tokens only, as in the paper's runs. The original knows padding
  only from the 2D attention mask; packed rows have none, so `forward(token_mask=...)` names the
  real tokens. Padding is weighted by 0 rather than dropped (same value up to summation order).
- `torch.distributions.Normal(..., validate_args=False)` in the noisy load: the validation reads
  the values on the host.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache
from transformers.generation import GenerationMixin
from transformers.masking_utils import create_causal_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import MoeCausalLMOutputWithPast, MoeModelOutputWithPast
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS, dynamic_rope_update
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, PreTrainedModel, slice_logits_to_keep
from transformers.utils import can_return_tuple
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.generic import merge_with_config_defaults
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from ..experts import compute_dtype, dispatch_by_expert, grouped_linear
from .configuration_llama_moe import LlamaMoEConfig

# --------------------------------------------------------------------------------------------------
# LLaMA attention (as transformers' Llama)


class LlamaMoERMSNorm(nn.Module):
    """Root-mean-square layer norm, computed in float32."""

    def __init__(self, hidden_size: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype)


class LlamaMoERotaryEmbedding(nn.Module):
    """RoPE cos/sin for given positions; `rope_parameters` selects default, linear or dynamic (NTK) scaling."""

    def __init__(self, config: LlamaMoEConfig):
        super().__init__()
        self.max_seq_len_cached = config.max_position_embeddings
        self.original_max_seq_len = config.max_position_embeddings
        self.config = config
        self.rope_type = config.rope_parameters["rope_type"]
        rope_init_fn: Callable = self.compute_default_rope_parameters
        if self.rope_type != "default":
            rope_init_fn = ROPE_INIT_FUNCTIONS[self.rope_type]
        inv_freq, self.attention_scaling = rope_init_fn(config)
        self.inv_freq = nn.Buffer(inv_freq, persistent=False)
        self.original_inv_freq = nn.Buffer(inv_freq.clone(), persistent=False)

    @staticmethod
    def compute_default_rope_parameters(config: LlamaMoEConfig, **kwargs) -> tuple[torch.Tensor, float]:
        """Inverse frequencies of plain RoPE, `1 / theta^(2i/d)`, and an attention scaling of 1."""
        base = config.rope_parameters["rope_theta"]
        dim = config.hidden_size // config.num_attention_heads
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
        return inv_freq, 1.0

    @dynamic_rope_update
    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = position_ids[..., None].float() * self.inv_freq.to(device=x.device, dtype=torch.float)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos = emb.cos() * self.attention_scaling
        sin = emb.sin() * self.attention_scaling
        return cos.to(dtype=x.dtype), sin.to(dtype=x.dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """Rotates half the hidden dims of the input."""
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim: int = 1):
    """Rotates queries and keys `(B, heads, T, D)` by the position embeddings `(B, T, D)`."""
    cos = cos.unsqueeze(unsqueeze_dim)
    sin = sin.unsqueeze(unsqueeze_dim)
    return (q * cos) + (rotate_half(q) * sin), (k * cos) + (rotate_half(k) * sin)


def repeat_kv(hidden_states: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, kv_heads, L, D) -> (B, kv_heads * n_rep, L, D), each key/value head repeated for its query group."""
    batch, num_key_value_heads, slen, head_dim = hidden_states.shape
    if n_rep == 1:
        return hidden_states
    hidden_states = hidden_states[:, :, None, :, :].expand(batch, num_key_value_heads, n_rep, slen, head_dim)
    return hidden_states.reshape(batch, num_key_value_heads * n_rep, slen, head_dim)


def eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """Softmax attention in plain PyTorch; the fallback of `ALL_ATTENTION_FUNCTIONS`."""
    key_states = repeat_kv(key, module.num_key_value_groups)
    value_states = repeat_kv(value, module.num_key_value_groups)
    attn_weights = torch.matmul(query, key_states.transpose(2, 3)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = F.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = F.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value_states)
    return attn_output.transpose(1, 2).contiguous(), attn_weights


class LlamaMoEAttention(nn.Module):
    """LLaMA-2 multi-head attention with grouped-query key/value heads and RoPE."""

    def __init__(self, config: LlamaMoEConfig, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.num_key_value_groups = config.num_attention_heads // config.num_key_value_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.attention_dropout
        self.is_causal = True
        bias = config.attention_bias
        self.q_proj = nn.Linear(config.hidden_size, config.num_attention_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(config.hidden_size, config.num_key_value_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(config.hidden_size, config.num_key_value_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(config.num_attention_heads * self.head_dim, config.hidden_size, bias=bias)

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None,
        cache: Cache | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        input_shape = hidden_states.shape[:-1]
        hidden_shape = (*input_shape, -1, self.head_dim)
        query_states = self.q_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        key_states = self.k_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        value_states = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        cos, sin = position_embeddings
        query_states, key_states = apply_rotary_pos_emb(query_states, key_states, cos, sin)
        if cache is not None:
            key_states, value_states = cache.update(key_states, value_states, self.layer_idx)

        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, attn_weights = attention_interface(
            self,
            query_states,
            key_states,
            value_states,
            attention_mask,
            dropout=0.0 if not self.training else self.attention_dropout,
            scaling=self.scaling,
            **kwargs,
        )
        attn_output = attn_output.reshape(*input_shape, -1).contiguous()
        return self.o_proj(attn_output), attn_weights


# --------------------------------------------------------------------------------------------------
# The MoE feed-forward: gate, experts, calculator, balance loss


class LlamaMoETopKGate(nn.Module):
    """The router (original `TopKBalancedNoisyGate`): picks `num_selects` experts per token.

    In train mode with `gate_add_noise`, Gaussian noise with a learned, input-dependent scale
    (`softplus(weight_noise(x)) + gate_noise_epsilon`) is added to the logits before the top-k.
    In eval mode routing is deterministic.

    `forward(hidden_states (N, hidden))` returns `(logits (N, E), scores (N, k), indices (N, k))`:
    the logits the top-k was taken from (noisy in train mode), the scores that weight the experts
    (softmax over the k chosen logits, or the logits themselves without `gate_use_softmax`),
    and the chosen experts (int64), in the order of the N tokens.
    """

    def __init__(self, config: LlamaMoEConfig):
        super().__init__()
        self.hidden_size = config.hidden_size
        self.num_experts = config.num_experts
        self.top_k = config.num_selects
        self.use_softmax = config.gate_use_softmax
        self.add_noise = config.gate_add_noise
        self.noise_epsilon = config.gate_noise_epsilon
        if config.gate_network.lower() == "mlp":
            self.gate_network = nn.Sequential(
                nn.Linear(config.hidden_size, config.num_experts, bias=False),
                nn.Tanh(),
                nn.Linear(config.num_experts, config.num_experts, bias=False),
            )
        else:
            self.gate_network = nn.Linear(config.hidden_size, config.num_experts, bias=False)
        if self.add_noise:
            self.weight_noise = nn.Linear(config.hidden_size, config.num_experts, bias=False)

    def noise_scale(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """Standard deviation of the logit noise, per token and expert: `softplus(W x) + epsilon`."""
        return F.softplus(self.weight_noise(hidden_states)) + self.noise_epsilon

    def forward(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits = self.gate_network(hidden_states)
        if self.training and self.add_noise:
            logits = logits + torch.randn_like(logits) * self.noise_scale(hidden_states)
        top_logits, indices = logits.topk(self.top_k, dim=-1)
        scores = F.softmax(top_logits.float(), dim=-1).to(logits.dtype) if self.use_softmax else top_logits
        return logits, scores, indices


def cv_squared(values: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Squared coefficient of variation, `var / mean^2` (unbiased variance); 0 for a single value."""
    if values.shape[0] == 1:
        return values.new_zeros((), dtype=torch.float32)
    values = values.float()
    return values.var() / (values.mean() ** 2 + eps)


def noisy_top_k_load(
    clean_logits: torch.Tensor,
    noisy_logits: torch.Tensor,
    noise_scale: torch.Tensor,
    top_k: int,
    token_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Differentiable expected load per expert under the logit noise (Shazeer et al. 2017), as the original computes it.

    For each token and expert: the probability that the expert is in the top-k when its own
    noise is resampled, `Phi((clean - threshold) / noise_scale)`, with the threshold the k-th
    or (k+1)-th largest noisy logit. Like the original, whether an expert "is in" compares the
    noise (not the noisy logit) with the (k+1)-th noisy logit. `token_weight` (N, 1), 1 for real
    tokens and 0 for padding, leaves padding out of the sum.
    """
    top_values = noisy_logits.topk(top_k + 1, dim=-1).values
    threshold_if_in = top_values[:, top_k : top_k + 1]
    threshold_if_out = top_values[:, top_k - 1 : top_k]
    is_in = (noisy_logits - clean_logits) > threshold_if_in
    normal = torch.distributions.Normal(0.0, 1.0, validate_args=False)  # validation reads the values on the host
    prob_if_in = normal.cdf((clean_logits - threshold_if_in) / noise_scale)
    prob_if_out = normal.cdf((clean_logits - threshold_if_out) / noise_scale)
    probabilities = torch.where(is_in, prob_if_in, prob_if_out)
    return (probabilities if token_weight is None else probabilities * token_weight).sum(0)


class LlamaMoEGLUExperts(nn.Module):
    """`num_experts` LLaMA GLU feed-forwards of possibly different hidden sizes (original `LinearGLUExperts`).

    The weights keep the original per-expert names (`weight_{gate,up,down}.{e}`); `stacked` lays
    them out for one grouped matmul per projection.
    """

    def __init__(self, hidden_size: int, expert_sizes: list[int], hidden_act: str):
        super().__init__()
        self.num_experts = len(expert_sizes)
        self.expert_sizes = list(expert_sizes)
        self.act_fn = ACT2FN[hidden_act]
        self.weight_gate = nn.ParameterList([nn.Parameter(torch.empty(size, hidden_size)) for size in expert_sizes])
        self.weight_up = nn.ParameterList([nn.Parameter(torch.empty(size, hidden_size)) for size in expert_sizes])
        self.weight_down = nn.ParameterList([nn.Parameter(torch.empty(hidden_size, size)) for size in expert_sizes])

    def stacked(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every expert's weights as `(E, K, N)` operands of `grouped_linear`, in `dtype`: gate and up
        `(E, hidden, width)`, down `(E, width, hidden)`. Uneven experts are zero-padded to a common width
        (the largest size, rounded up to a multiple of 8 for the grouped-matmul kernels); a padded unit
        computes act(0) * 0 = 0 and adds nothing, so the result is exact."""
        width = -(-max(self.expert_sizes) // 8) * 8

        def rows(weights):  # (size, hidden) each -> (E, hidden, width)
            return torch.stack([F.pad(w.to(dtype), (0, 0, 0, width - w.shape[0])) for w in weights]).transpose(1, 2)

        down = torch.stack([F.pad(w.to(dtype), (0, width - w.shape[1])) for w in self.weight_down]).transpose(1, 2)
        return rows(self.weight_gate), rows(self.weight_up), down

    def extra_repr(self) -> str:
        return f"expert_sizes={self.expert_sizes}"


class LlamaMoECalculator(nn.Module):
    """Runs every token through its chosen experts and sums their outputs (original `UniversalCalculator`).

    Unlike the original's loop over the experts that received tokens, one grouped matmul per
    projection runs all experts (`models/experts.py`): no host sync per layer, and every expert's
    parameters take part in every forward (what ZeRO-3 and FSDP2 need when ranks route differently).
    """

    def __init__(self, config: LlamaMoEConfig, layer_idx: int):
        super().__init__()
        self.experts = LlamaMoEGLUExperts(config.hidden_size, config.expert_sizes(layer_idx), config.hidden_act)
        self.num_experts = config.num_experts
        self.multiply_gate_scores = config.multiply_gate_scores
        self.score_scale_factor = config.layer_score_scale_factor(layer_idx)

    def forward(self, hidden_states: torch.Tensor, indices: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """`hidden_states` (N, hidden), `indices`/`scores` (N, k) -> (N, hidden)."""
        dispatch = dispatch_by_expert(indices, scores, self.num_experts)
        gate, up, down = self.experts.stacked(compute_dtype(self.experts.weight_gate[0]))
        inputs = hidden_states[dispatch.token_of_slot]
        hidden = self.experts.act_fn(grouped_linear(inputs, gate, dispatch.offsets))
        outputs = grouped_linear(hidden * grouped_linear(inputs, up, dispatch.offsets), down, dispatch.offsets)
        if self.multiply_gate_scores:
            outputs = outputs * (dispatch.scores * self.score_scale_factor)[:, None]
        summed = torch.zeros_like(hidden_states, dtype=outputs.dtype)
        return summed.index_add(0, dispatch.token_of_slot, outputs)


class LlamaMoESparseBlock(nn.Module):
    """The MoE feed-forward of one layer: gate, then calculator; also returns the layer's balance loss."""

    def __init__(self, config: LlamaMoEConfig, layer_idx: int):
        super().__init__()
        self.gate = LlamaMoETopKGate(config)
        self.calculator = LlamaMoECalculator(config, layer_idx)

    def balance_loss(
        self,
        hidden_states: torch.Tensor,
        logits: torch.Tensor,
        scores: torch.Tensor,
        indices: torch.Tensor,
        token_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """`cv^2(importance) + cv^2(load)` over the real tokens (all tokens without `token_mask`), unweighted.

        Importance is the summed score of each expert. Load is the number of tokens routed to it
        (tokens with a positive score), or in train mode with noise the differentiable expected
        load; that needs the clean logits and noise scale, which are recomputed here (two small
        matmuls) so that the gate's output stays `(logits, scores, indices)`. Padding is weighted
        by 0 rather than dropped, which would need the number of real tokens on the host.
        """
        gate = self.gate
        scores_per_expert = torch.zeros_like(logits).scatter(1, indices, scores)
        token_weight = None
        if token_mask is not None:
            token_weight = token_mask.reshape(-1, 1).to(device=logits.device, dtype=scores_per_expert.dtype)
            scores_per_expert = scores_per_expert * token_weight
        importance = scores_per_expert.sum(0)
        if self.training and gate.add_noise and gate.top_k < gate.num_experts:
            clean_logits = gate.gate_network(hidden_states)
            load = noisy_top_k_load(clean_logits, logits, gate.noise_scale(hidden_states), gate.top_k, token_weight)
        else:
            load = (scores_per_expert > 0).sum(0)
        return cv_squared(importance) + cv_squared(load)

    def forward(
        self, hidden_states: torch.Tensor, token_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch_size, sequence_length, hidden_size = hidden_states.shape
        flat = hidden_states.reshape(-1, hidden_size)
        logits, scores, indices = self.gate(flat)
        output = self.calculator(flat, indices, scores).to(hidden_states.dtype)
        balance_loss = self.balance_loss(flat, logits, scores, indices, token_mask)
        return output.view(batch_size, sequence_length, hidden_size), balance_loss


# --------------------------------------------------------------------------------------------------
# Decoder layer and models


class LlamaMoEDecoderLayer(GradientCheckpointingLayer):
    """Pre-norm LLaMA layer whose MLP is a `LlamaMoESparseBlock`; returns `(hidden_states, balance_loss)`."""

    def __init__(self, config: LlamaMoEConfig, layer_idx: int):
        super().__init__()
        self.hidden_size = config.hidden_size
        self.self_attn = LlamaMoEAttention(config=config, layer_idx=layer_idx)
        self.mlp = LlamaMoESparseBlock(config, layer_idx)
        self.input_layernorm = LlamaMoERMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = LlamaMoERMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        use_cache: bool | None = False,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        token_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        residual = hidden_states
        hidden_states = self.input_layernorm(hidden_states)
        hidden_states, _ = self.self_attn(
            hidden_states=hidden_states,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=use_cache,
            position_embeddings=position_embeddings,
            **kwargs,
        )
        hidden_states = residual + hidden_states
        residual = hidden_states
        hidden_states, balance_loss = self.mlp(self.post_attention_layernorm(hidden_states), token_mask)
        return residual + hidden_states, balance_loss


class LlamaMoEPreTrainedModel(PreTrainedModel):
    config_class = LlamaMoEConfig
    config: LlamaMoEConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["LlamaMoEDecoderLayer"]
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_record_outputs = {
        "router_logits": OutputRecorder(LlamaMoETopKGate, index=0),
        "hidden_states": LlamaMoEDecoderLayer,
        "attentions": LlamaMoEAttention,
    }

    def _init_weights(self, module):
        super()._init_weights(module)
        # The expert weights live in the ParameterLists of LlamaMoEGLUExperts (transformers visits those
        # lists, not the experts module, which holds no parameters directly).
        if isinstance(module, nn.ParameterList):
            for weight in module:
                init.normal_(weight, mean=0.0, std=self.config.initializer_range)


@dataclass
class LlamaMoEModelOutputWithPast(MoeModelOutputWithPast):
    """`MoeModelOutputWithPast` plus `aux_loss`: the balance losses of all layers, summed (unweighted)."""

    aux_loss: torch.Tensor | None = None


def token_mask_from(attention_mask: torch.Tensor | None, sequence_length: int) -> torch.Tensor | None:
    """The real (non-padding) tokens of the current forward, (B, T) bool, from a 2D attention mask."""
    if attention_mask is None or attention_mask.dim() != 2:
        return None
    return attention_mask[:, -sequence_length:].bool()


class LlamaMoEModel(LlamaMoEPreTrainedModel):
    """Embeddings, decoder layers, final norm."""

    def __init__(self, config: LlamaMoEConfig):
        super().__init__(config)
        self.padding_idx = config.pad_token_id
        self.vocab_size = config.vocab_size
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, self.padding_idx)
        self.layers = nn.ModuleList(
            [LlamaMoEDecoderLayer(config, layer_idx) for layer_idx in range(config.num_hidden_layers)]
        )
        self.norm = LlamaMoERMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = LlamaMoERotaryEmbedding(config=config)
        self.gradient_checkpointing = False
        self.post_init()

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
    ) -> LlamaMoEModelOutputWithPast:
        """`token_mask` (B, T) bool marks the real tokens for the balance loss (default: the 2D `attention_mask`;
        packed rows have none, so their trailing padding must be named this way)."""
        if (input_ids is None) ^ (inputs_embeds is not None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        if position_ids is None:
            past_seen_tokens = cache.get_seq_length() if cache is not None else 0
            position_ids = torch.arange(inputs_embeds.shape[1], device=inputs_embeds.device) + past_seen_tokens
            position_ids = position_ids.unsqueeze(0)
        # The mask sees only a cache the caller passed: a fresh, empty one changes nothing but would hide
        # packed sequences from create_causal_mask (it looks for them only without a cache).
        causal_mask = create_causal_mask(
            config=self.config,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            cache=cache,
            position_ids=position_ids,
        )
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        if token_mask is None:
            token_mask = token_mask_from(attention_mask, inputs_embeds.shape[1])
        hidden_states = inputs_embeds
        position_embeddings = self.rotary_emb(hidden_states, position_ids=position_ids)
        aux_loss = 0.0
        for decoder_layer in self.layers[: self.config.num_hidden_layers]:
            hidden_states, balance_loss = decoder_layer(
                hidden_states,
                attention_mask=causal_mask,
                position_embeddings=position_embeddings,
                position_ids=position_ids,
                cache=cache,
                use_cache=use_cache,
                token_mask=token_mask,
                **kwargs,
            )
            aux_loss = aux_loss + balance_loss
        hidden_states = self.norm(hidden_states)
        return LlamaMoEModelOutputWithPast(last_hidden_state=hidden_states, cache=cache, aux_loss=aux_loss)


class LlamaMoEForCausalLM(LlamaMoEPreTrainedModel, GenerationMixin):
    """LLaMA-MoE with its LM head.

    `aux_loss` on the output is the summed balance loss of all MoE layers over the real tokens
    (`token_mask`, else the 2D `attention_mask`, else all tokens), unweighted (the
    original multiplies each layer's loss by `gate_balance_loss_weight` before summing, which is
    the same as weighting the sum). `loss` includes `gate_balance_loss_weight * aux_loss` when
    labels are given and `config.gate_use_balance` is true, as in the original.
    """

    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: LlamaMoEConfig):
        super().__init__(config)
        self.model = LlamaMoEModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

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
        outputs: LlamaMoEModelOutputWithPast = self.model(
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
            if self.config.gate_use_balance:
                loss = loss + self.config.gate_balance_loss_weight * outputs.aux_loss
        return MoeCausalLMOutputWithPast(
            loss=loss,
            aux_loss=outputs.aux_loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            router_logits=outputs.router_logits,
        )


__all__ = ["LlamaMoEForCausalLM", "LlamaMoEModel", "LlamaMoEPreTrainedModel", "LlamaMoETopKGate"]
