"""The ports of the paper's models (LLaMA-MoE v1, ModuleFormer/MoLM) against the paper's own code.

The fixtures in `tests/fixtures/` (see its README) were made by running the original modeling code
(transformers 4.36) on tiny random models: the ports must load them with
`AutoModelForCausalLM` and reproduce their logits and expert loads. The other tests check
what training and routemix rely on: KV-cache generation, packed rows, padding, gate noise
only in train mode, the auxiliary-loss switches, frozen routers, and a real `train.py` run.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import models.llama_moe as llama_moe
import models.moduleformer as moduleformer
from launch import REPO

FIXTURES = REPO / "tests" / "fixtures"
FIXTURE_NAMES = ["llama_moe_a", "llama_moe_b", "moduleformer_a", "moduleformer_b"]


def recorded_router_class(model) -> type:
    """The router class the model declares for `router_logits` recording (what routemix counts)."""
    return type(model)._can_record_outputs["router_logits"].target_class


def record_router_outputs(model, router_class: type) -> list[tuple]:
    """Installs hooks that append each `router_class` module's `(logits, scores, indices)` output, in call order."""
    outputs = []
    for module in model.modules():
        if isinstance(module, router_class):
            module.register_forward_hook(lambda _module, _args, output: outputs.append(output))
    return outputs


def cv_squared(values: torch.Tensor) -> torch.Tensor:
    values = values.float()
    return values.var() / (values.mean() ** 2 + 1e-10)


def mutual_information(logits: torch.Tensor) -> torch.Tensor:
    probs = logits.softmax(-1)
    mean_probs = probs.mean(0)
    return -((probs * logits.log_softmax(-1)).sum(-1).mean() - (mean_probs * (mean_probs + 1e-8).log()).sum())


# --------------------------------------------------------------------------------------------------
# Against the paper's code


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_fixture_logits_and_expert_loads_match_the_original_code(name):
    model, info = AutoModelForCausalLM.from_pretrained(FIXTURES / name, dtype=torch.float32, output_loading_info=True)
    assert type(model).__module__.startswith(f"models.{name.rsplit('_', 1)[0]}.")  # our port, no remote code
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    expected = json.loads((FIXTURES / name / "expected.json").read_text())
    input_ids, attention_mask = torch.tensor(expected["input_ids"]), torch.tensor(expected["attention_mask"])
    routers = record_router_outputs(model.eval(), recorded_router_class(model))
    attention_routers = record_router_outputs(model, moduleformer.ModuleFormerAttentionRouter)
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)

    assert out.logits.dtype == torch.float32
    assert (out.logits - torch.tensor(expected["logits"])).abs().max().item() <= 1e-4
    loads = [torch.bincount(indices.flatten(), minlength=logits.shape[-1]).tolist() for logits, _, indices in routers]
    assert loads == expected["gate_load_per_layer"]
    for logits, scores, indices in routers:  # all B*T tokens, row-major, int64 top-k
        assert indices.dtype == torch.int64 and indices.shape == (input_ids.numel(), scores.shape[1])

    # aux_loss, rebuilt from the router outputs and the fixture's loads
    if name.startswith("llama_moe"):
        expected_aux = sum(
            cv_squared(torch.zeros_like(logits).scatter(1, indices, scores).sum(0)) + cv_squared(torch.tensor(load))
            for (logits, scores, indices), load in zip(routers, expected["gate_load_per_layer"])
        )
    else:  # the MI losses of the attention and the MLP routers
        assert len(attention_routers) == len(routers) == model.config.n_layer
        expected_aux = sum(mutual_information(logits) for logits, _, _ in attention_routers + routers)
    assert out.aux_loss.item() == pytest.approx(float(expected_aux), rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("name", ["llama_moe_b", "moduleformer_a"])
def test_published_config_with_auto_map_loads_the_port_without_remote_code(name, tmp_path):
    """Hub checkpoints carry `auto_map` to their own code; the registered port must win without trust_remote_code."""
    folder = shutil.copytree(FIXTURES / name, tmp_path / name)
    config = json.loads((folder / "config.json").read_text())
    prefix = "modeling_llama_moe.LlamaMoE" if name.startswith("llama") else "modeling_moduleformer.ModuleFormer"
    config["auto_map"] = {"AutoModelForCausalLM": f"{prefix}ForCausalLM"}
    config["architectures"] = [prefix.split(".")[1] + "ForCausalLM"]
    (folder / "config.json").write_text(json.dumps(config))
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert type(model) in (llama_moe.LlamaMoEForCausalLM, moduleformer.ModuleFormerForCausalLM)


def test_registration_is_idempotent():
    import importlib

    for package in (llama_moe, moduleformer):
        importlib.reload(package)  # registers the same model_type again
    config = llama_moe.LlamaMoEConfig(num_hidden_layers=1, hidden_size=16, intermediate_size=32, num_attention_heads=2,
                                      num_experts=4, num_selects=2, vocab_size=11)
    assert type(AutoModelForCausalLM.from_config(config)).__name__ == "LlamaMoEForCausalLM"


def test_unsupported_original_settings_are_rejected():
    with pytest.raises(Exception, match="SwitchBalancedGate"):
        llama_moe.LlamaMoEConfig(gate_type="SwitchBalancedGate", num_hidden_layers=1)
    with pytest.raises(Exception, match="must be 4 numbers that sum to"):
        llama_moe.LlamaMoEConfig(num_hidden_layers=1, intermediate_size=32, num_experts=4, size_experts=[[8, 8, 8, 4]])


# --------------------------------------------------------------------------------------------------
# Generation, packing, padding


def fixture_model(name: str):
    return AutoModelForCausalLM.from_pretrained(FIXTURES / name, dtype=torch.float32).eval()


@pytest.mark.parametrize("name", ["llama_moe_b", "moduleformer_b"])
def test_greedy_generation_with_kv_cache_equals_without(name):
    model = fixture_model(name)
    generator = torch.Generator().manual_seed(0)
    long, short = torch.randint(3, 97, (1, 7), generator=generator), torch.randint(3, 97, (1, 4), generator=generator)
    batch = torch.cat([long, torch.cat([torch.zeros(1, 3, dtype=torch.long), short], 1)])  # left padding
    attention_mask = torch.tensor([[1] * 7, [0, 0, 0, 1, 1, 1, 1]])
    settings = dict(max_new_tokens=6, do_sample=False, pad_token_id=0, eos_token_id=None,
                    return_dict_in_generate=True, output_logits=True)
    cached = model.generate(batch, attention_mask=attention_mask, use_cache=True, **settings)
    uncached = model.generate(batch, attention_mask=attention_mask, use_cache=False, **settings)
    alone = model.generate(short, use_cache=True, **settings)

    assert torch.equal(cached.sequences, uncached.sequences)
    assert (torch.stack(cached.logits) - torch.stack(uncached.logits)).abs().max().item() <= 1e-5
    # the padded prompt generates what it generates alone
    assert torch.equal(cached.sequences[1, 7:], alone.sequences[0, 4:])
    assert (torch.stack(cached.logits)[:, 1] - torch.stack(alone.logits)[:, 0]).abs().max().item() <= 1e-5


@pytest.mark.parametrize("name", ["llama_moe_b", "moduleformer_b"])
def test_packed_row_equals_its_examples_run_separately(name):
    model = fixture_model(name)
    routers = record_router_outputs(model, recorded_router_class(model))
    generator = torch.Generator().manual_seed(1)
    first, second = torch.randint(3, 97, (1, 5), generator=generator), torch.randint(3, 97, (1, 7), generator=generator)
    packed = torch.cat([first, second], 1)
    restarting_positions = torch.cat([torch.arange(5), torch.arange(7)])[None]
    with torch.no_grad():
        separate = torch.cat([model(input_ids=first).logits, model(input_ids=second).logits], 1)
        separate_indices = [torch.cat([a[2], b[2]]) for a, b in zip(routers[:3], routers[3:6])]
        routers.clear()
        together = model(input_ids=packed, position_ids=restarting_positions).logits
        together_indices = [indices for _, _, indices in routers]
        routers.clear()
        unaware = model(input_ids=packed).logits  # negative control: one long example

    assert (together - separate).abs().max().item() <= 1e-5
    assert all(torch.equal(a, b) for a, b in zip(together_indices, separate_indices))
    assert (unaware - separate).abs().max().item() > 1e-3
    # the same holds with use_cache on (the default of the ModuleFormer fixtures' config)
    with torch.no_grad():
        cached = model(input_ids=packed, position_ids=restarting_positions, use_cache=True).logits
    assert (cached - separate).abs().max().item() <= 1e-5


@pytest.mark.parametrize("name", ["llama_moe_a", "moduleformer_a"])
def test_padding_changes_nothing_for_the_real_tokens(name):
    model = fixture_model(name)
    tokens = torch.randint(3, 97, (1, 6), generator=torch.Generator().manual_seed(2))
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), tokens], 1)
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1, 1]])
    with torch.no_grad():
        alone = model(input_ids=tokens)
        left = model(input_ids=padded, attention_mask=mask)
    assert (left.logits[:, 3:] - alone.logits).abs().max().item() <= 1e-5
    assert left.aux_loss.item() == pytest.approx(alone.aux_loss.item(), abs=1e-5)  # padding never counts


# --------------------------------------------------------------------------------------------------
# Training behaviour


def tiny_llama_moe(**overrides) -> llama_moe.LlamaMoEForCausalLM:
    settings = dict(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                    num_experts=4, num_selects=2, max_position_embeddings=64)
    torch.manual_seed(0)
    return llama_moe.LlamaMoEForCausalLM(llama_moe.LlamaMoEConfig(**{**settings, **overrides}))


def tiny_moduleformer(**overrides) -> moduleformer.ModuleFormerForCausalLM:
    settings = dict(vocab_size=50, n_embd=16, n_layer=2, n_head=2, att_hidden=8, ffd_hidden=16, n_att_experts=4,
                    k_att=2, n_mlp_experts=4, k_mlp=2, gating_size=8, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    return moduleformer.ModuleFormerForCausalLM(moduleformer.ModuleFormerConfig(**{**settings, **overrides}))


def test_llama_moe_gate_noise_only_in_train_mode():
    model = tiny_llama_moe()
    ids = torch.randint(0, 50, (2, 8), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        evaluated = [model.eval()(input_ids=ids).logits for _ in range(2)]
        trained = model.train()(input_ids=ids).logits
    assert torch.equal(evaluated[0], evaluated[1])
    assert (trained - evaluated[0]).abs().max().item() > 1e-4
    # negative control: no noise, no dropout -> train mode computes the eval logits
    quiet = tiny_llama_moe(gate_add_noise=False)
    with torch.no_grad():
        assert torch.equal(quiet.train()(input_ids=ids).logits, quiet.eval()(input_ids=ids).logits)
    # the noise is trainable: its weights get gradients through the logits and the balance loss
    model.train()(input_ids=ids, labels=ids).loss.backward()
    assert model.model.layers[0].mlp.gate.weight_noise.weight.grad.abs().sum() > 0


def test_moduleformer_sampled_routing_only_in_train_mode():
    ids = torch.randint(0, 50, (2, 8), generator=torch.Generator().manual_seed(4))
    model = tiny_moduleformer(sample_topk=1)
    with torch.no_grad():
        evaluated = [model.eval()(input_ids=ids).logits for _ in range(2)]
        trained = model.train()(input_ids=ids).logits
    assert torch.equal(evaluated[0], evaluated[1])
    assert (trained - evaluated[0]).abs().max().item() > 1e-4
    greedy = tiny_moduleformer(sample_topk=0)
    with torch.no_grad():
        assert torch.equal(greedy.train()(input_ids=ids).logits, greedy.eval()(input_ids=ids).logits)


@pytest.mark.parametrize("gate_type", ["linear", "gmm"])
def test_moduleformer_other_router_networks_run(gate_type):
    model = tiny_moduleformer(gate_type=gate_type, aux_loss_type="switch")
    out = model(input_ids=torch.arange(6)[None], labels=torch.arange(6)[None])
    assert out.logits.shape == (1, 6, 50) and torch.isfinite(out.aux_loss)


def test_aux_loss_is_added_only_when_the_switch_is_on():
    ids = torch.randint(0, 50, (2, 8), generator=torch.Generator().manual_seed(5))
    for build, switch_on, switch_off, weight in [
        (tiny_llama_moe, dict(gate_use_balance=True, gate_balance_loss_weight=0.5), dict(gate_use_balance=False), 0.5),
        (tiny_moduleformer, dict(aux_loss_weight=0.5), dict(aux_loss_weight=0), 0.5),
    ]:
        for overrides, expected_weight in [(switch_on, weight), (switch_off, 0.0)]:
            model = build(**overrides).eval()
            out = model(input_ids=ids, labels=ids)
            lm_loss = model.loss_function(logits=out.logits, labels=ids, vocab_size=50)
            assert out.aux_loss.item() > 0.0 or build is tiny_moduleformer  # MI loss may be negative
            assert out.loss.item() == pytest.approx((lm_loss + expected_weight * out.aux_loss).item(), abs=1e-6)
        assert model(input_ids=ids).loss is None


@pytest.mark.parametrize("build", [tiny_llama_moe, tiny_moduleformer])
def test_frozen_routers_get_no_gradient_and_checkpointing_keeps_gradients(build):
    ids = torch.randint(0, 50, (2, 8), generator=torch.Generator().manual_seed(6))
    model = build().train()
    routers = [m for m in model.modules() if isinstance(m, recorded_router_class(model))]
    router_params = {id(p) for router in routers for p in router.parameters()}
    named = dict(model.named_parameters())
    # every parameter of the recorded routers' layers' gate lives inside the router module
    gate_prefix = ".mlp.gate." if build is tiny_llama_moe else ".mlpf.gate."
    assert {id(p) for name, p in named.items() if gate_prefix in name} == router_params
    for router in routers:
        router.requires_grad_(False)

    def gradients(checkpointing: bool) -> dict[str, torch.Tensor]:
        model.zero_grad(set_to_none=True)
        (model.activation_checkpointing_enable if checkpointing else model.activation_checkpointing_disable)()
        torch.manual_seed(7)  # the same gate noise in both runs
        model(input_ids=ids, labels=ids).loss.backward()
        return {name: p.grad.clone() for name, p in named.items() if p.grad is not None}

    plain, checkpointed = gradients(False), gradients(True)
    assert all(named[name].requires_grad and id(named[name]) not in router_params for name in plain)
    assert any("expert" in name for name in plain)
    assert plain.keys() == checkpointed.keys()
    assert max((plain[k] - checkpointed[k]).abs().max().item() for k in plain) <= 1e-6


# --------------------------------------------------------------------------------------------------
# routemix's training loop on each family


def save_tiny_model(family: str, folder: Path) -> Path:
    """A random tiny model of `family` with the repository's tiny tokenizer, as `train.py --model` loads it."""
    tokenizer = AutoTokenizer.from_pretrained(REPO / "models" / "tiny")
    ids = dict(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
               bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
    if family == "llama_moe":
        model = tiny_llama_moe(**ids, size_experts=[[4, 4, 8, 16], [8, 8, 8, 8]], max_position_embeddings=256)
    else:
        model = tiny_moduleformer(**ids)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def train_runs(tmp_path_factory) -> dict[str, tuple[subprocess.Popen, Path]]:
    """One short dynamic-mixing `train.py` run per family, started together (they are mostly start-up time). --seq-len 80:
    under the tiny tokenizer the first reasoning dev examples' prompts take 69 tokens before the first assistant one,
    and a probe batch must hold a trained token of every dataset."""
    runs = {}
    for family in ("llama_moe", "moduleformer"):
        folder = tmp_path_factory.mktemp(family)
        model_dir, out = save_tiny_model(family, folder / "model"), folder / "run"
        command = [sys.executable, "train.py", "--model", str(model_dir), "--out", str(out), "--mix", "dynamic",
                   "--max-steps", "1", "--probe-every", "1", "--probe-batches", "1", "--seq-len", "80",
                   "--micro-batch-size", "2", "--log-every", "1", "--save-every", "1", "--aux-loss-coef", "0.01"]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        runs[family] = (process, out)
    yield runs
    for process, _ in runs.values():
        if process.poll() is None:
            process.kill()


@pytest.mark.parametrize("family", ["llama_moe", "moduleformer"])
def test_train_py_updates_the_mixture_from_the_ports_routers(family, train_runs):
    process, out = train_runs[family]
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    updates = [json.loads(line) for line in (out / "mixture.jsonl").read_text().splitlines()]
    assert [u["step"] for u in updates] == [1]
    histograms = torch.tensor(updates[0]["histograms"])  # (datasets, layers, experts) from the MLP routers
    assert histograms.shape[1:] == (2, 4) and histograms.sum() > 0
    assert updates[0]["weights_after"] != updates[0]["weights_before"]
    assert sum(updates[0]["weights_after"]) == pytest.approx(1.0)


def test_freeze_router_covers_every_gate_as_the_paper_froze_them():
    """The paper froze every parameter with "gate" in its name; for ModuleFormer that includes the attention-head
    routers, which routemix does not count but `--freeze-router` freezes (`routing.other_routers`)."""
    import routing

    model = tiny_moduleformer()
    routers = routing.find_routers(model) + routing.other_routers(model)
    frozen = {name for prefix, router in routers for name, _ in router.named_parameters(prefix=prefix)}
    gates = {name for name, _ in model.named_parameters() if ".gate." in name}
    assert gates == frozen and any(".attn." in name for name in gates)
    assert routing.other_routers(tiny_llama_moe()) == []


# --------------------------------------------------------------------------------------------------
# What ZeRO-3, FSDP2 and packed rows need from the ports


def test_llama_moe_layer_has_no_host_sync_and_every_expert_takes_part():
    """A host sync (`.tolist()`, `.item()`, boolean indexing) cannot run on fake tensors, which have no values:
    the whole forward and a backward of an MoE block running on them proves there is none. Every expert's
    parameters get a gradient even when it received no token (ZeRO-3 and FSDP2 fetch and reduce them all)."""
    from torch._subclasses.fake_tensor import DataDependentOutputException, FakeTensorMode

    from models.experts import grouped_linear

    model = tiny_llama_moe(size_experts=[[4, 4, 8, 16], [8] * 4]).train().to(torch.bfloat16)  # grouped_mm fakes need bf16
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[1, 5:] = False
    with FakeTensorMode(allow_non_fake_inputs=True):
        hidden = torch.randn(2, 8, 16, dtype=torch.bfloat16, requires_grad=True)
        output, balance_loss = model.model.layers[0].mlp(hidden, mask)
        (output.float().sum() + balance_loss).backward()
        model(input_ids=torch.randint(0, 50, (2, 8)), token_mask=mask)
        with pytest.raises(DataDependentOutputException):  # negative control: the loop fallback reads counts on the host
            grouped_linear(torch.randn(4, 4, dtype=torch.bfloat16), torch.randn(4, 4, 4, dtype=torch.bfloat16),
                           torch.tensor([1, 2, 3, 4], dtype=torch.int32))

    model = tiny_llama_moe().train().float()
    one_token = torch.tensor([[7]])  # top-2 of 4 experts: two experts get nothing in each layer
    model(input_ids=one_token, labels=torch.tensor([[-100]])).logits.sum().backward()
    experts = {name: p.grad for name, p in model.named_parameters() if ".calculator.experts." in name}
    assert len(experts) == 2 * 3 * 4 and all(grad is not None for grad in experts.values())
    assert sum(int(grad.abs().sum() == 0) for grad in experts.values()) == 2 * 3 * 2  # the unused experts: zeros


def test_llama_moe_noisy_balance_loss_leaves_padding_out():
    """In train mode with gate noise the load is the differentiable expected load; padding rows weighted 0
    give the loss of the real rows alone."""
    block = tiny_llama_moe().train().model.layers[0].mlp
    generator = torch.Generator().manual_seed(8)
    hidden = torch.randn(10, 16, generator=generator)
    logits = torch.randn(10, 4, generator=generator)  # noisy logits, as the gate returned them
    scores, indices = logits.topk(2, dim=-1)
    scores = scores.softmax(-1)
    mask = torch.tensor([True] * 7 + [False] * 3)
    with torch.no_grad():
        masked = block.balance_loss(hidden, logits, scores, indices, mask)
        real_only = block.balance_loss(hidden[:7], logits[:7], scores[:7], indices[:7], None)
        everything = block.balance_loss(hidden, logits, scores, indices, None)
    assert masked.item() == pytest.approx(real_only.item(), abs=1e-6)
    assert abs(everything.item() - real_only.item()) > 1e-3  # negative control
