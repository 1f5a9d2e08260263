"""Configuration of LLaMA-MoE v1, with the field names of the original `config.json`.

LLaMA-MoE (pjlab-sys4nlp/llama-moe) splits each feed-forward layer of LLaMA-2 into
`num_experts` GLU experts and adds a noisy top-k gate. The published checkpoints
(`llama-moe/LLaMA-MoE-v1-3_5B-2_8`, `-3_5B-4_16`, `-3_0B-2_16`) and the paper's tiny
fixtures store exactly these fields; unknown extra fields (`auto_map`, `torch_dtype`, ...)
are accepted and kept.

Only the gate and calculator that the v1 checkpoints use are implemented:
`gate_type="TopKBalancedNoisyGate"` and `calculator_type="UniversalCalculator"`.
`drop_tokens`, `dropped_padding` and `capacity_factor` belong to the original
`SwitchDropTokenCalculator`; they are read and saved but have no effect here.
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig
from transformers.modeling_rope_utils import RopeParameters

SUPPORTED_GATE_TYPES = ("TopKBalancedNoisyGate",)
SUPPORTED_GATE_NETWORKS = ("mlp", "linear")
SUPPORTED_CALCULATOR_TYPES = ("UniversalCalculator",)


@strict
class LlamaMoEConfig(PreTrainedConfig):
    r"""LLaMA-MoE v1 configuration.

    LLaMA fields (`hidden_size`, `num_attention_heads`, `num_key_value_heads`, `rope_theta`,
    `rope_scaling`, ...) mean what they mean for LLaMA-2; `rope_scaling` in the original
    `{"type": "linear" | "dynamic", "factor": f}` form is converted to transformers-5
    `rope_parameters`. MoE fields:

    num_experts (`int`): experts per MoE layer.
    num_selects (`int`): experts each token is routed to (top-k).
    size_experts (`list[list[int]]`, *optional*): per layer, the hidden size of each expert
        (experts may be uneven); `None` splits `intermediate_size` evenly.
    gate_network (`str`): `"mlp"` (Linear-Tanh-Linear) or `"linear"`.
    gate_use_softmax (`bool`): scores are the softmax of the top-k logits (else the raw logits).
    gate_use_balance (`bool`): add the balance loss to the LM loss when labels are given.
    gate_balance_loss_weight (`float`): weight of the balance loss in the LM loss.
    gate_add_noise (`bool`): trainable Gaussian noise on the gate logits, in train mode only.
    gate_noise_epsilon (`float`): floor of the noise standard deviation.
    multiply_gate_scores (`bool`): weight each expert's output by its gate score.
    score_scale_factor (`float` or `list[float]`): extra factor on the scores (per layer if a list).
    """

    model_type = "llama_moe"
    keys_to_ignore_at_inference = ["cache"]

    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = None
    hidden_act: str = "silu"
    max_position_embeddings: int = 2048
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-6
    use_cache: bool = True
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    pretraining_tp: int | None = 1
    tie_word_embeddings: bool = False
    rope_parameters: RopeParameters | dict | None = None
    attention_bias: bool = False
    attention_dropout: int | float = 0.0
    # experts
    num_experts: int = 16
    num_selects: int = 4
    size_experts: list[list[int]] | None = None
    # gate
    gate_type: str = "TopKBalancedNoisyGate"
    gate_network: str = "mlp"
    gate_use_softmax: bool = True
    gate_use_balance: bool = True
    gate_balance_loss_weight: int | float = 1e-2
    gate_add_noise: bool = True
    gate_noise_epsilon: int | float = 1e-2
    # calculator
    calculator_type: str = "UniversalCalculator"
    multiply_gate_scores: bool = True
    score_scale_factor: int | float | list[int | float] = 1.0
    add_weight_norm: bool = False
    drop_tokens: bool = True
    dropped_padding: str = "zero"
    capacity_factor: int | float = 1.25
    output_router_logits: bool = False

    def __post_init__(self, **kwargs):
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        """Rejects settings of the original code that this port does not implement, and inconsistent sizes."""
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads")
        if self.gate_type not in SUPPORTED_GATE_TYPES:
            raise ValueError(f"gate_type {self.gate_type!r} is not supported (only {SUPPORTED_GATE_TYPES})")
        if self.gate_network.lower() not in SUPPORTED_GATE_NETWORKS:
            raise ValueError(f"gate_network {self.gate_network!r} is not one of {SUPPORTED_GATE_NETWORKS}")
        if self.calculator_type not in SUPPORTED_CALCULATOR_TYPES:
            raise ValueError(
                f"calculator_type {self.calculator_type!r} is not supported (only {SUPPORTED_CALCULATOR_TYPES})"
            )
        if self.multiply_gate_scores and self.add_weight_norm:
            raise ValueError("add_weight_norm=True is not implemented (the original raises NotImplementedError too)")
        if self.num_selects > self.num_experts:
            raise ValueError(f"num_selects {self.num_selects} > num_experts {self.num_experts}")
        for layer in range(self.num_hidden_layers):
            sizes = self.expert_sizes(layer)
            if len(sizes) != self.num_experts or sum(sizes) != self.intermediate_size:
                raise ValueError(
                    f"layer {layer}: expert sizes {sizes} must be {self.num_experts} numbers that sum to "
                    f"intermediate_size {self.intermediate_size}"
                )

    def expert_sizes(self, layer: int) -> list[int]:
        """Hidden size of each expert of MoE layer `layer`."""
        if self.size_experts is not None:
            return list(self.size_experts[layer])
        return [self.intermediate_size // self.num_experts] * self.num_experts

    def layer_score_scale_factor(self, layer: int) -> float:
        """The factor on the gate scores in MoE layer `layer`."""
        factor = self.score_scale_factor
        return float(factor[layer] if isinstance(factor, list) else factor)


__all__ = ["LlamaMoEConfig"]
