"""LoRA through peft on the tiny MoE: adapters on attention and fused expert parameters, routers never adapted,
an exact resume, and a final/ that loads merged and as an adapter with the same logits."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from tiny_families import FAMILIES, tiny_model
from transformers import AutoConfig, AutoModelForCausalLM

import routing
from launch import TINY_RUN, run_train
from models import TINY_DIR, load_model, lora

LORA = [*TINY_RUN, "--max-steps", "8", "--probe-every", "3", "--save-every", "4", "--seed", "5",
        "--lora-r", "4", "--report-to", "none"]


def test_targets_are_attention_and_experts_never_routers():
    model, _ = load_model("tiny", seed=0)
    routers = routing.find_routers(model)
    modules, parameters = lora.target_names(model, ("all",), routers)
    layers = range(model.config.num_hidden_layers)  # every layer of tiny has attention and experts
    assert modules == [f"model.layers.{i}.self_attn.{p}_proj" for i in layers for p in "qkvo"]  # not lm_head, not gate
    assert parameters == [f"model.layers.{i}.mlp.experts.{p}" for i in layers for p in ("gate_up_proj", "down_proj")]
    assert lora.target_names(model, ("q_proj", "down_proj"), routers) == (modules[0::4], parameters[1::2])
    with pytest.raises(ValueError, match="matches the router model.layers.0.self_attn.q_proj"):  # say it were one
        lora.target_names(model, ("q_proj",), [("model.layers.0.self_attn.q_proj", None)])
    with pytest.raises(ValueError, match=r"matches no nn.Linear module .* \(candidates: down_proj, gate_up_proj, k_proj"):
        lora.target_names(model, ("w1",), routers)


def run_outputs(out):
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for record in metrics:
        del record["tokens_per_s"]  # wall-clock
    updates = [json.loads(line) for line in (out / "mixture.jsonl").read_text().splitlines()]
    for record in updates:
        del record["seconds"]
    return metrics, updates, load_file(out / "final" / "model.safetensors"), load_file(out / "final" / "adapter" / "adapter_model.safetensors")


def test_lora_run_freezes_routers_resumes_exactly_and_exports_merged_and_adapter(tmp_path):
    out = tmp_path / "lora"
    result = run_train(out, *LORA)
    assert result.returncode == 0, result.stderr[-3000:]
    # by hand from the config, r = 4. A LoRA pair on a map in -> out has r * in + out * r parameters; on a fused expert
    # parameter, r per expert: E * r * in + out * E * r. Per layer: q (H -> heads * d), o (heads * d -> H), k and v
    # (H -> kv_heads * d); experts.gate_up_proj (H -> 2 M), experts.down_proj (M -> H)
    config, r = AutoConfig.from_pretrained(TINY_DIR), 4
    H, V, E, M, d = config.hidden_size, config.vocab_size, config.num_experts, config.moe_intermediate_size, config.head_dim
    q, kv = config.num_attention_heads * d, config.num_key_value_heads * d
    per_layer = (r * H + q * r) * 2 + (r * H + kv * r) * 2 + (E * r * H + 2 * M * E * r) + (E * r * M + H * E * r)
    trainable = per_layer * config.num_hidden_layers
    # all parameters, the adapters' included: embeddings and the LM head (unless tied), the final norm, and per layer
    # attention, q/k norms, two RMSNorms, the router and the experts
    base_layer = H * q * 2 + H * kv * 2 + 2 * d + 2 * H + E * H + E * 2 * M * H + E * H * M
    total = (1 if config.tie_word_embeddings else 2) * V * H + H + base_layer * config.num_hidden_layers + trainable
    line = f"{trainable:,} trainable parameters of {total:,} ({100 * trainable / total:.2f}%)"
    assert line in result.stdout, result.stdout[-2000:]

    # the routers are bitwise the base model's; the experts and attention did learn (the merge is in final/)
    base, merged = load_file(out / "base" / "model.safetensors"), load_file(out / "final" / "model.safetensors")
    assert base.keys() == merged.keys()
    gates = [k for k in base if k.endswith("mlp.gate.weight")]
    assert len(gates) == config.num_hidden_layers and all(torch.equal(base[k], merged[k]) for k in gates)
    changed = {k for k in base if not torch.equal(base[k], merged[k])}
    assert any("experts" in k for k in changed) and any("q_proj" in k for k in changed)
    assert not any(k.endswith(("embed_tokens.weight", "lm_head.weight", "norm.weight")) for k in changed)

    # exact resume: the same command on a copy of the run cut back to its step-4 checkpoint
    resumed = tmp_path / "resumed"
    shutil.copytree(out, resumed)
    shutil.rmtree(resumed / "checkpoints" / "step_8")
    shutil.rmtree(resumed / "final")
    result = run_train(resumed, *LORA)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed from" in result.stdout and "at step 4" in result.stdout
    expected, got = run_outputs(out), run_outputs(resumed)
    assert [m["step"] for m in got[0]] == list(range(1, 9))
    assert got[0] == expected[0] and got[1] == expected[1]  # losses and mixture updates, bitwise
    for a, b in zip(expected[2:], got[2:]):  # merged model and adapter, bitwise
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    # final/ (merged) and final/adapter (onto its base, by transformers' peft integration) give the same logits,
    # and so does the step-8 checkpoint, loaded as a model
    ids = torch.randint(0, 2000, (2, 24), generator=torch.Generator().manual_seed(0))
    logits = {}
    for name, path in (("merged", out / "final"), ("adapter", out / "final" / "adapter"), ("step_8", out / "checkpoints" / "step_8")):
        model = AutoModelForCausalLM.from_pretrained(path).eval()
        with torch.no_grad():
            logits[name] = model(input_ids=ids).logits
    assert (logits["merged"] - logits["adapter"]).abs().max() <= 1e-5
    assert (logits["merged"] - logits["step_8"]).abs().max() <= 1e-5
    untrained = AutoModelForCausalLM.from_pretrained(out / "base").eval()
    with torch.no_grad():
        assert (untrained(input_ids=ids).logits - logits["merged"]).abs().max() > 1e-2  # negative control


def test_lora_refuses_what_it_cannot_do(tmp_path):
    result = run_train(tmp_path / "a", "--lora-r", "4", "--no-freeze-router", "--max-steps", "1")
    assert result.returncode != 0 and "routers are never adapted and stay frozen" in result.stderr
    result = run_train(tmp_path / "b", "--lora-r", "4", "--lora-dropout", "0.1", "--max-steps", "1", "--report-to", "none")
    assert result.returncode != 0 and "has no dropout; pass --lora-dropout 0" in result.stderr


@pytest.mark.parametrize("family", FAMILIES)
def test_every_adapted_target_takes_effect_in_every_family(family):
    """peft applies a 3-D parameter's adapter only while its module is called: every target must move the logits,
    and merging must keep them (a target whose adapter is silently ignored would fail one or the other)."""
    from peft import LoraConfig

    model = tiny_model(family).eval()
    routers = routing.find_routers(model) + routing.other_routers(model)
    modules, parameters = lora.target_names(model, ("all",), routers)
    assert modules and (parameters or family == "llama_moe")  # LLaMA-MoE's ParameterList experts: attention only
    ids = torch.randint(0, 200, (1, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        base = model(input_ids=ids).logits
    peft_model, left_out = lora.adapt(model, LoraConfig(r=2, target_modules=modules, target_parameters=parameters or None))
    # peft 0.21's transformers-v4 compatibility takes DeepSeek-V3's shared-expert Linears for fused expert parameters
    # and drops them (reported as left out); peft 0.22 adapts them. Either way nothing is lost without a word.
    shared = [f"model.layers.{i}.mlp.shared_experts.{p}_proj" for i in range(2) for p in ("down", "gate", "up")]
    assert left_out in (([], shared) if family == "deepseek_v3" else ([],))
    lora_b = {n: p for n, p in peft_model.named_parameters() if "lora_B" in n}
    assert len(lora_b) == len(modules) + len(parameters) - len(left_out)
    with torch.no_grad():
        for name, weight in lora_b.items():  # one adapter at a time
            weight.normal_(0, 0.5)
            assert (peft_model(input_ids=ids).logits - base).abs().max() > 1e-4, f"{family}: {name} has no effect"
            weight.zero_()
        for weight in lora_b.values():
            weight.normal_(0, 0.1)
        adapted = peft_model(input_ids=ids).logits
        merged = peft_model.merge_and_unload()(input_ids=ids).logits
    assert (adapted - merged).abs().max() <= 1e-5
