"""Routing capture on tiny random models of every supported transformers family.

The reference counts come from a different place than the capture: a forward-pre
hook on each router's sibling experts module reads the indices the experts were
actually given, and a Python loop counts them over the real tokens.
"""

import json

import pytest
import torch
import transformers
from torch import nn

from routing import RoutingCapture, find_routers

COMMON = dict(
    vocab_size=100,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
    eos_token_id=2,
)
TINY_MOES = {
    "mixtral": (transformers.MixtralConfig, dict(num_local_experts=4, num_experts_per_tok=2)),
    "qwen2_moe": (
        transformers.Qwen2MoeConfig,
        dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, shared_expert_intermediate_size=32),
    ),
    "qwen3_moe": (
        transformers.Qwen3MoeConfig,
        dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, head_dim=8),
    ),
    "olmoe": (transformers.OlmoeConfig, dict(num_experts=4, num_experts_per_tok=2)),
    "deepseek_v3": (
        transformers.DeepseekV3Config,
        dict(
            n_routed_experts=8,
            num_experts_per_tok=2,
            n_group=4,
            topk_group=2,
            moe_intermediate_size=32,
            first_k_dense_replace=0,
            n_shared_experts=1,
            num_key_value_heads=4,
            kv_lora_rank=16,
            q_lora_rank=None,
            qk_rope_head_dim=8,
            qk_nope_head_dim=8,
            v_head_dim=8,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        ),
    ),
    "gpt_oss": (
        transformers.GptOssConfig,
        dict(
            num_local_experts=4,
            num_experts_per_tok=2,
            head_dim=8,
            layer_types=["sliding_attention", "full_attention"],
            sliding_window=16,
        ),
    ),
}
TOP_K = 2


def tiny_moe(family: str) -> nn.Module:
    config_class, overrides = TINY_MOES[family]
    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(config_class(**{**COMMON, **overrides})).eval()


def padded_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """3 rows of 8 tokens: row 0 right-padded (6 real), row 1 left-padded (5 real), row 2 full: 19 real tokens."""
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(3, 100, (3, 8), generator=generator)
    attention_mask = torch.ones(3, 8, dtype=torch.long)
    attention_mask[0, 6:] = 0
    attention_mask[1, :3] = 0
    input_ids[attention_mask == 0] = 0
    return input_ids, attention_mask


def record_expert_inputs(model: nn.Module, routers):
    """Forward-pre hooks on each router's sibling `experts` module, keeping the expert indices it receives."""
    received = [[] for _ in routers]
    handles = []
    for layer, (name, _) in enumerate(routers):
        experts = model.get_submodule(name.rsplit(".", 1)[0]).experts

        def keep(_module, args, layer=layer):
            received[layer].append(args[1].clone())

        handles.append(experts.register_forward_pre_hook(keep))
    return received, handles


def count_by_hand(indices: torch.Tensor, token_mask: torch.Tensor, num_experts: int) -> list[int]:
    counts = [0] * num_experts
    for token, real in enumerate(token_mask.reshape(-1).tolist()):
        if real:
            for expert in indices[token].tolist():
                counts[expert] += 1
    return counts


@pytest.mark.parametrize("family", list(TINY_MOES))
def test_counts_are_the_experts_used_on_real_tokens(family):
    model = tiny_moe(family)
    routers = find_routers(model)
    assert [name for name, _ in routers] == [f"model.layers.{i}.mlp.{routers[0][0].rsplit('.', 1)[1]}" for i in (0, 1)]
    num_experts = 8 if family == "deepseek_v3" else 4
    input_ids, attention_mask = padded_batch()
    received, handles = record_expert_inputs(model, routers)
    with torch.no_grad(), RoutingCapture(routers) as capture:
        model(input_ids, attention_mask=attention_mask)
        counts = capture.histogram(attention_mask.bool())
    for handle in handles:
        handle.remove()

    assert counts.dtype == torch.int64 and counts.shape == (2, num_experts)
    assert counts.sum(dim=1).tolist() == [19 * TOP_K, 19 * TOP_K]
    for layer in range(2):
        (indices,) = received[layer]
        assert counts[layer].tolist() == count_by_hand(indices, attention_mask, num_experts)


def test_deepseek_counts_follow_group_routing_and_bias_not_plain_top_k():
    model = tiny_moe("deepseek_v3")
    routers = find_routers(model)
    # Experts 2 and 5 (groups 1 and 2 of 4) get a bias far above the sigmoid scores' spread, so the
    # model always routes to them; a top-k recomputed from the logits would pick others.
    bias = torch.tensor([0.0, 0.0, 0.6, 0.0, 0.0, 0.6, 0.0, 0.0])
    logits = []
    for _, router in routers:
        router.e_score_correction_bias.copy_(bias)
        router.register_forward_hook(lambda _m, _a, output: logits.append(output[0]))
    input_ids, attention_mask = padded_batch()
    received, _ = record_expert_inputs(model, routers)
    with torch.no_grad(), RoutingCapture(routers) as capture:
        model(input_ids, attention_mask=attention_mask)
        counts = capture.histogram(attention_mask.bool())

    assert counts.tolist() == [[0, 0, 19, 0, 0, 19, 0, 0], [0, 0, 19, 0, 0, 19, 0, 0]]
    for layer in range(2):
        assert counts[layer].tolist() == count_by_hand(received[layer][0], attention_mask, 8)
        recomputed = torch.topk(logits[layer].sigmoid(), TOP_K, dim=-1).indices
        assert count_by_hand(recomputed, attention_mask, 8) != counts[layer].tolist()


def test_packed_rows_count_like_padded_rows():
    # Two examples (5 and 3 tokens) packed in one row with restarting position_ids, no attention mask,
    # against the same examples padded in two rows. Router weights are scaled up so that top-k
    # choices are far from ties. Negative control: the packed row with running positions (attention
    # across the boundary) routes differently. use_cache=False matters: in eval mode transformers
    # creates a KV cache by default and then ignores the packing in position_ids.
    model = tiny_moe("qwen3_moe")
    routers = find_routers(model)
    with torch.no_grad():
        for _, router in routers:
            router.weight.mul_(100)
    generator = torch.Generator().manual_seed(2)
    first, second = torch.randint(3, 100, (5,), generator=generator), torch.randint(3, 100, (3,), generator=generator)
    packed = torch.cat([first, second])[None]
    position_ids = torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2]])
    padded = torch.zeros(2, 5, dtype=torch.long)
    padded[0], padded[1, :3] = first, second
    attention_mask = (torch.arange(5) < torch.tensor([[5], [3]])).long()
    with torch.no_grad(), RoutingCapture(routers) as capture:
        model(packed, position_ids=position_ids, use_cache=False)
        packed_counts = capture.histogram(torch.ones(1, 8, dtype=torch.bool))
        model(padded, attention_mask=attention_mask)
        padded_counts = capture.histogram(attention_mask.bool())
        model(packed, use_cache=False)
        unpacked_counts = capture.histogram(torch.ones(1, 8, dtype=torch.bool))
    assert packed_counts.sum(dim=1).tolist() == [8 * TOP_K, 8 * TOP_K]
    assert packed_counts.tolist() == padded_counts.tolist()
    assert unpacked_counts.tolist() != packed_counts.tolist()


def test_several_forwards_then_one_histogram():
    model = tiny_moe("mixtral")
    routers = find_routers(model)
    input_ids, attention_mask = padded_batch()
    with torch.no_grad(), RoutingCapture(routers) as capture:
        model(input_ids, attention_mask=attention_mask)
        once = capture.histogram(attention_mask.bool())
        model(input_ids, attention_mask=attention_mask)
        model(input_ids[:2], attention_mask=attention_mask[:2])
        masks = torch.cat([attention_mask.reshape(-1), attention_mask[:2].reshape(-1)]).bool()
        twice = capture.histogram(masks)
        with pytest.raises(ValueError, match="routed 24 tokens .* token_mask has 16"):
            model(input_ids, attention_mask=attention_mask)
            capture.histogram(attention_mask[:2].bool())
    assert once.sum().item() == 2 * 19 * TOP_K
    # The second histogram covers the full batch again plus its first two rows (11 real tokens).
    assert twice.sum(dim=1).tolist() == [(19 + 11) * TOP_K] * 2
    assert bool((twice >= once).all())


def test_hooks_exist_only_inside_the_block():
    model = tiny_moe("olmoe")
    routers = find_routers(model)
    input_ids, attention_mask = padded_batch()
    with torch.no_grad():
        model(input_ids)  # transformers installs its own output-recording hooks on the first forward
    before = [dict(router._forward_hooks) for _, router in routers]
    with torch.no_grad(), RoutingCapture(routers) as capture:
        assert [len(router._forward_hooks) for _, router in routers] == [len(b) + 1 for b in before]
        model(input_ids, attention_mask=attention_mask)
    assert [dict(router._forward_hooks) for _, router in routers] == before
    assert not capture.active
    with torch.no_grad():
        model(input_ids)
    with pytest.raises(RuntimeError, match="no routing recorded"):
        capture.histogram(attention_mask.bool())


def test_dense_model_is_rejected_with_a_clear_message():
    config = transformers.LlamaConfig(**{**COMMON, "num_hidden_layers": 1})
    model = transformers.LlamaForCausalLM(config)
    with pytest.raises(ValueError) as error:
        find_routers(model)
    message = str(error.value)
    for expected in ("LlamaForCausalLM has no recognisable MoE routers", "Mixtral", "DeepSeek-V3", "GPT-OSS"):
        assert expected in message
    for expected in ("llama_moe", "moduleformer", "pass pattern, a regular expression"):
        assert expected in message


class ToyRouter(nn.Module):
    """A router in the supported shape: returns (logits, scores, indices)."""

    def __init__(self, hidden: int, num_experts: int):
        super().__init__()
        self.proj = nn.Linear(hidden, num_experts, bias=False)

    def forward(self, hidden_states):
        logits = self.proj(hidden_states.reshape(-1, hidden_states.shape[-1]))
        scores, indices = torch.topk(logits, 1, dim=-1)
        return logits, scores, indices


class ToyMoE(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.ModuleList(nn.ModuleDict({"route": ToyRouter(4, 3), "proj": nn.Linear(4, 4)}) for _ in "ab")

    def forward(self, hidden_states):
        for block in self.blocks:
            block["route"](hidden_states)
            hidden_states = block["proj"](hidden_states)
        return hidden_states


def test_router_pattern_finds_custom_routers():
    model = ToyMoE()
    with pytest.raises(ValueError, match="ToyMoE has no recognisable MoE routers"):
        find_routers(model)
    routers = find_routers(model, r"\.route$")
    assert [name for name, _ in routers] == ["blocks.0.route", "blocks.1.route"]
    hidden_states = torch.randn(2, 5, 4)
    with torch.no_grad(), RoutingCapture(routers) as capture:
        model(hidden_states)
        token_mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
        counts = capture.histogram(token_mask)
    # Hidden states entering block 0 are the inputs: count their top-1 experts by hand.
    first_layer = count_by_hand(routers[0][1].proj(hidden_states.reshape(10, 4)).argmax(-1)[:, None], token_mask, 3)
    assert counts.tolist()[0] == first_layer
    assert counts.sum(dim=1).tolist() == [8, 8]
    with pytest.raises(ValueError, match="'nothing' matches no module name of ToyMoE"):
        find_routers(model, "nothing")


def test_layers_with_different_numbers_of_experts_are_rejected():
    model = ToyMoE()
    model.blocks[1]["route"] = ToyRouter(4, 5)
    with torch.no_grad(), RoutingCapture(find_routers(model, r"\.route$")) as capture:
        model(torch.randn(1, 3, 4))
        with pytest.raises(ValueError, match=r"different numbers of experts per layer: \[3, 5\]"):
            capture.histogram(torch.ones(1, 3, dtype=torch.bool))


def test_pattern_on_the_same_routers_as_discovery():
    model = tiny_moe("mixtral")
    assert find_routers(model, r"\.mlp\.gate$") == find_routers(model)


def test_router_returning_plain_logits_fails_clearly():
    model = tiny_moe("qwen2_moe")
    routers = find_routers(model, r"shared_expert_gate$")  # an nn.Linear: plain float logits
    with torch.no_grad(), RoutingCapture(routers), pytest.raises(TypeError) as error:
        model(torch.tensor([[5, 6, 7]]))
    assert "'model.layers.0.mlp.shared_expert_gate' (Linear) returned a torch.float32 tensor" in str(error.value)
    assert "selected expert indices" in str(error.value)


def test_histograms_per_dataset_equal_one_masked_histogram_per_dataset():
    """One packed batch of three datasets, counted per dataset in one call, against a masked histogram() per
    dataset over the same forward; tokens with id -1 (padding) and ids >= the number of datasets count nowhere."""
    model = tiny_moe("qwen3_moe")
    routers = find_routers(model)
    generator = torch.Generator().manual_seed(5)
    input_ids = torch.randint(3, 100, (3, 12), generator=generator)
    dataset_ids = torch.randint(-1, 3, (3, 12), generator=generator)
    dataset_ids[0, :3] = 7  # out of range: dropped
    with torch.no_grad(), RoutingCapture(routers) as capture:
        model(input_ids, use_cache=False)
        together = capture.histograms(dataset_ids, 3)
        expected = []
        for d in range(3):
            model(input_ids, use_cache=False)
            expected.append(capture.histogram(dataset_ids == d))
    assert together.shape == (3, 2, 4) and together.dtype == torch.int64
    assert torch.equal(together, torch.stack(expected))
    assert together.sum().item() == int(((dataset_ids >= 0) & (dataset_ids < 3)).sum()) * 2 * TOP_K
    assert together.sum(dim=(1, 2)).tolist() != [0, 0, 0] and len(set(together.sum(dim=(1, 2)).tolist())) > 1


def test_period_counts_carry_over_datasets_without_tokens():
    """A dataset with no token in a period keeps its counts from the last period that had some; one never seen is
    reported (its zero counts are no routing at all, not routing unlike every other dataset's)."""
    from routing import PeriodCounts

    counts = PeriodCounts(capture=None, num_datasets=3)
    first = torch.tensor([[[4, 0]], [[0, 0]], [[1, 3]]])
    got, stale, unseen = counts.carry_over(first, [2, 0, 2])
    assert torch.equal(got, first) and stale == [] and unseen == [1]
    second = torch.tensor([[[0, 0]], [[2, 2]], [[0, 6]]])
    got, stale, unseen = counts.carry_over(second, [0, 2, 3])
    assert got.tolist() == [[[4, 0]], [[2, 2]], [[0, 6]]] and stale == [0] and unseen == []
    restored = PeriodCounts(capture=None, num_datasets=3)
    restored.load_state_dict(json.loads(json.dumps(counts.state_dict())))
    assert torch.equal(restored.carry_over(torch.zeros(3, 1, 2, dtype=torch.long), [0, 0, 0])[0], got)
