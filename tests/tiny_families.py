"""Tiny random checkpoints of every MoE family routemix supports, saved the way users bring them:
a folder with `config.json`, safetensors and a tokenizer with a chat template (the repository's tiny
tokenizer), loaded by path through `load_model`."""

from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

import models.llama_moe as llama_moe
import models.moduleformer as moduleformer
import routing

REPO = Path(__file__).resolve().parents[1]
TOKENIZER = REPO / "models" / "tiny"
COMMON = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              max_position_embeddings=512)
CONFIGS = {
    "mixtral": (transformers.MixtralConfig, dict(num_local_experts=4, num_experts_per_tok=2)),
    "qwen2_moe": (transformers.Qwen2MoeConfig, dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                                                    shared_expert_intermediate_size=32)),
    "qwen3_moe": (transformers.Qwen3MoeConfig, dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, head_dim=8)),
    "olmoe": (transformers.OlmoeConfig, dict(num_experts=4, num_experts_per_tok=2)),
    "deepseek_v3": (transformers.DeepseekV3Config, dict(
        n_routed_experts=8, num_experts_per_tok=2, n_group=4, topk_group=2, moe_intermediate_size=32, first_k_dense_replace=0,
        n_shared_experts=1, num_key_value_heads=4, kv_lora_rank=16, q_lora_rank=None, qk_rope_head_dim=8, qk_nope_head_dim=8,
        v_head_dim=8, rope_parameters={"rope_type": "default", "rope_theta": 10000.0})),
    "gpt_oss": (transformers.GptOssConfig, dict(
        num_local_experts=4, num_experts_per_tok=2, head_dim=8, layer_types=["sliding_attention", "full_attention"],
        sliding_window=6, rope_parameters={"rope_type": "default", "rope_theta": 10000.0})),
    "llama_moe": (llama_moe.LlamaMoEConfig, dict(num_experts=4, num_selects=2, size_experts=[[8, 8, 16, 32], [16] * 4])),
    "moduleformer": (moduleformer.ModuleFormerConfig, dict(
        n_embd=32, n_layer=2, n_head=2, att_hidden=16, ffd_hidden=32, n_att_experts=4, k_att=2, n_mlp_experts=4, k_mlp=2,
        gating_size=16)),
}
FAMILIES = list(CONFIGS)
TRANSFORMERS_FAMILIES = [f for f in FAMILIES if f not in ("llama_moe", "moduleformer")]


def tiny_model(family: str, router_scale: float = 1.0, seed: int = 0) -> torch.nn.Module:
    """A random tiny model of `family` over the tiny tokenizer's vocabulary. `router_scale` multiplies the
    router weights, which spreads the router logits apart so that top-k choices are far from ties."""
    tokenizer = AutoTokenizer.from_pretrained(TOKENIZER)
    config_class, overrides = CONFIGS[family]
    settings = {} if family == "moduleformer" else {**COMMON, **overrides}
    config = config_class(**(settings or overrides), vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                          bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        for _, router in routing.find_routers(model):
            for parameter in router.parameters():
                parameter.mul_(router_scale)
    return model


def save_tiny(family: str, folder: Path, router_scale: float = 1.0, dtype: torch.dtype = torch.float32) -> Path:
    """`tiny_model(family)` saved to `folder` in `dtype` with the tiny tokenizer, as `train.py --model folder` loads it."""
    model = tiny_model(family, router_scale).to(dtype)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(TOKENIZER).save_pretrained(folder)
    return folder


FP4_VALUES = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0])


def mxfp4(shape: tuple[int, ...], generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random MXFP4 data for a weight stored as `shape` = (experts, rows, columns), quantized along the columns in
    blocks of 32 (the OCP microscaling format GPT-OSS ships): `(blocks uint8 (E, rows, columns/32, 16) with two
    4-bit codes per byte, low nibble first; scales uint8 (E, rows, columns/32), exponent + 127; the values they
    encode)`."""
    *prefix, columns = shape
    codes = torch.randint(0, 16, (*prefix, columns // 32, 32), generator=generator)
    exponents = torch.randint(-4, 1, (*prefix, columns // 32), generator=generator)
    values = FP4_VALUES[codes] * torch.exp2(exponents.float())[..., None]
    blocks = (codes[..., 0::2] | (codes[..., 1::2] << 4)).to(torch.uint8)
    return blocks, (exponents + 127).to(torch.uint8), values.reshape(shape)


def save_tiny_mxfp4_gpt_oss(folder: Path) -> dict[str, torch.Tensor]:
    """A tiny GPT-OSS checkpoint laid out as the published ones: bf16 weights, MXFP4 experts (`*_blocks`, `*_scales`)
    and a `quantization_config`. Returns the expert weights it encodes, in the model's (experts, in, out) layout."""
    import json

    from safetensors.torch import load_file, save_file

    save_tiny("gpt_oss", folder, dtype=torch.bfloat16)
    weights = load_file(folder / "model.safetensors")
    generator = torch.Generator().manual_seed(5)
    expected = {}
    for name in [n for n in weights if n.endswith(("experts.gate_up_proj", "experts.down_proj"))]:
        num_experts, in_features, out_features = weights.pop(name).shape
        blocks, scales, values = mxfp4((num_experts, out_features, in_features), generator)
        weights[f"{name}_blocks"], weights[f"{name}_scales"] = blocks, scales
        expected[name] = values.transpose(1, 2)  # stored (E, out, in); the model computes x @ (E, in, out)
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "mxfp4", "modules_to_not_convert": [
        "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return expected
