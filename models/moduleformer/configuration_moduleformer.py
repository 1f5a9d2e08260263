"""Configuration of ModuleFormer (MoLM), with the field names of the original `config.json`.

ModuleFormer (IBM/ModuleFormer; the MoLM checkpoints `ibm/MoLM-350M-4B`, `-700M-4B`,
`-700M-8B`) replaces both halves of a transformer block with mixtures of experts: a
mixture of attention heads (`n_att_experts`, top `k_att`) and a mixture of MLPs
(`n_mlp_experts`, top `k_mlp`). Attention is stick-breaking attention, so there are no
position embeddings. Unknown extra fields in a `config.json` (`auto_map`, ...) are kept.
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

SUPPORTED_GATE_TYPES = ("mlp", "linear", "gmm")


@strict
class ModuleFormerConfig(PreTrainedConfig):
    r"""ModuleFormer configuration.

    n_embd / n_layer / n_head (`int`): hidden size, blocks, attention heads (per attention expert).
    att_hidden (`int`): width of one attention expert (its `n_head` heads together).
    ffd_hidden (`int`): hidden size of one MLP expert.
    n_att_experts, k_att (`int`): attention experts, and how many each token uses.
    n_mlp_experts, k_mlp (`int`): MLP experts, and how many each token uses.
    gate_type (`str`): router network, `"mlp"` (Linear-GELU-Dropout-Linear), `"linear"` or `"gmm"`.
    gating_size (`int`): hidden size of the `"mlp"` (and `"gmm"`) router.
    sample_topk (`int`): in train mode, how many of the k experts are sampled instead of taken greedily.
    aux_loss_type (`str`): `"mi"` (mutual information) or any other value for switch + z-loss.
    aux_loss_weight (`float`): weight of the auxiliary loss in the training loss; 0 turns it off.
    activation_function (`str`): activation of the MLP experts.
    resid_pdrop / embd_pdrop / moe_pdrop (`float`): dropout on residual branches, embeddings, router.
    attn_pdrop (`float`): read but unused, as in the original.
    block_size / history_length (`int`): sized unused buffers in the original; the cache here is unbounded,
        like the original's.
    layer_norm_epsilon (`float`): read but unused, as in the original (its layer norms use eps 1e-5).
    """

    model_type = "moduleformer"
    keys_to_ignore_at_inference = ["cache"]
    attribute_map = {
        "hidden_size": "n_embd",
        "num_attention_heads": "n_head",
        "num_hidden_layers": "n_layer",
    }

    vocab_size: int = 50295
    block_size: int = 512
    history_length: int = 512
    n_embd: int = 1024
    n_layer: int = 24
    n_head: int = 8
    att_hidden: int = 512
    ffd_hidden: int = 2048
    activation_function: str = "gelu_new"
    resid_pdrop: int | float = 0.0
    embd_pdrop: int | float = 0.0
    attn_pdrop: int | float = 0.0
    moe_pdrop: int | float = 0.0
    sample_topk: int = 0
    gating_size: int = 256
    n_att_experts: int = 32
    k_att: int = 2
    n_mlp_experts: int = 32
    k_mlp: int = 2
    layer_norm_epsilon: int | float = 1e-5
    initializer_range: float = 0.02
    use_cache: bool = True
    bos_token_id: int | None = 50256
    eos_token_id: int | list[int] | None = 50256
    pad_token_id: int | None = None
    tie_word_embeddings: bool = False
    aux_loss_type: str = "mi"
    aux_loss_weight: int | float = 0
    gate_type: str = "mlp"
    n_ctx: int | None = None
    output_router_logits: bool = False

    def __post_init__(self, **kwargs):
        self.n_ctx = self.history_length * self.n_layer  # as the original computes it
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        """Rejects inconsistent sizes and routers the original does not define."""
        if self.att_hidden % self.n_head != 0:
            raise ValueError(f"att_hidden {self.att_hidden} is not a multiple of n_head {self.n_head}")
        if self.gate_type not in SUPPORTED_GATE_TYPES:
            raise ValueError(f"gate_type {self.gate_type!r} is not one of {SUPPORTED_GATE_TYPES}")
        if self.k_att > self.n_att_experts or self.k_mlp > self.n_mlp_experts:
            raise ValueError("k_att / k_mlp cannot exceed the number of experts")
        if self.sample_topk > min(self.k_att, self.k_mlp):
            raise ValueError(f"sample_topk {self.sample_topk} exceeds k_att or k_mlp")


__all__ = ["ModuleFormerConfig"]
