"""Every supported MoE family, loaded through `load_model` from a saved folder as users load it:

- packed rows (>= 2 per micro-batch, trailing padding), run through `attention.packed_inputs` as
  train.py runs them, give the logits and the routing histograms of each example run alone, on every
  attention kernel the family supports on CPU (flex_attention: forward), with a negative control
  (the same rows as one sequence each);
- the load-balancing loss counts real tokens only: a padded packed batch has the loss of its real
  tokens alone, where the model's own loss (negative control) counts the padding.
"""

import json
import math

import pytest
import torch
from tiny_families import FAMILIES, TRANSFORMERS_FAMILIES, save_tiny, tiny_model
from transformers import AutoModelForCausalLM

from reading import data
import routing
from models import attention, load_model
from models.families import BalanceLoss


# Example lengths packed into 2 rows of 16 (row 0: 7 + 9, row 1: 5 + 6 + 5 padding). Positions 10..15 of
# row 0's second example lie outside GPT-OSS's sliding window of 6 from the first: its layers are covered.
LENGTHS = [7, 9, 5, 6]
ROWS = [[0, 1], [2, 3]]
SEQ_LEN = 16


def cpu_kernels(model) -> list[str]:
    """The attention kernels the model supports that run (forward) on CPU, as `models.attention` decides."""
    kernels = []
    for kernel in attention.supported_kernels(model):
        try:
            attention.check_kernel(model, kernel, torch.device("cpu"), training=False)
            kernels.append(kernel)
        except (ValueError, ImportError):
            pass
    return kernels


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("families")
    return {family: save_tiny(family, folder / family, router_scale=20.0) for family in FAMILIES}


def examples(vocab_size: int) -> list[data.Example]:
    generator = torch.Generator().manual_seed(0)
    ids = [torch.randint(4, vocab_size, (n,), generator=generator).tolist() for n in LENGTHS]
    return [data.Example(input_ids=i, labels=i) for i in ids]


def packed_batch(vocab_size: int) -> dict[str, torch.Tensor]:
    """The real collator's micro-batch of 2 packed rows."""
    parts = examples(vocab_size)
    return data.collate_packed([[parts[i] for i in row] for row in ROWS], SEQ_LEN, pad_id=0)


def run(model, capture, input_ids) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and the (L, E) routing histogram of one forward of whole rows, all tokens counted."""
    with torch.no_grad():
        logits = model(input_ids=input_ids, use_cache=False).logits
    return logits, capture.histogram(torch.ones(input_ids.shape, dtype=torch.bool))


@pytest.mark.parametrize("family", FAMILIES)
def test_packed_rows_equal_separate_examples_on_every_kernel(family, checkpoints):
    model, tokenizer = load_model(str(checkpoints[family]), attn_implementation="eager", training=False)
    model.eval()
    parts = examples(len(tokenizer))
    with routing.RoutingCapture(routing.find_routers(model)) as capture:
        alone = [run(model, capture, torch.tensor([e.input_ids])) for e in parts]
    batch = packed_batch(len(tokenizer))
    mask = batch["token_mask"]
    expected_histogram = sum(histogram for _, histogram in alone)

    kernels = cpu_kernels(model)
    assert kernels == {"gpt_oss": ["eager"], "olmoe": ["eager", "sdpa"], "moduleformer": ["eager", "sdpa"]}.get(
        family, ["eager", "sdpa", "flex_attention"])  # ModuleFormer: stick-breaking attention under either name
    for kernel in kernels:
        model, _ = load_model(str(checkpoints[family]), attn_implementation=kernel, training=False)
        model.eval()
        assert model.config._attn_implementation == kernel
        with routing.RoutingCapture(routing.find_routers(model)) as capture:
            with torch.no_grad():  # as train.py and the probe call it
                logits = model(**attention.packed_inputs(model.config, batch, "cpu", torch.float32)).logits
            histogram = capture.histogram(mask)
            unaware, _ = run(model, capture, batch["input_ids"])  # negative control: one long sequence per row
        worst = 0.0
        for row, members in enumerate(ROWS):
            start = 0
            for i in members:
                n = LENGTHS[i]
                worst = max(worst, (logits[row, start : start + n] - alone[i][0][0]).abs().max().item())
                start += n
        assert worst <= 1e-5, f"{family} on {kernel}: packed differs from separate by {worst}"
        assert torch.equal(histogram, expected_histogram), f"{family} on {kernel}"
        assert histogram.sum().item() == sum(LENGTHS) * 2 * histogram.shape[0]  # top-2, every layer
        assert (unaware[mask] - logits[mask]).abs().max().item() > 1e-3


@pytest.mark.parametrize("family", FAMILIES)
def test_balance_loss_counts_real_tokens_only(family, checkpoints):
    model, tokenizer = load_model(str(checkpoints[family]), attn_implementation="eager", training=False)
    model.eval()
    if family == "deepseek_v3":
        with pytest.raises(ValueError, match="DeepSeek-V3 balances with a score-correction bias"):
            BalanceLoss(model)
        return
    balance = BalanceLoss(model)
    batch = packed_batch(len(tokenizer))
    mask = batch["token_mask"]
    assert (~mask).sum() == 5  # row 1 ends in padding
    # the same examples in one row without padding: only real tokens, each attending to its own example
    real = {key: batch[key][mask][None] for key in ("input_ids", "position_ids")}
    real_mask = torch.ones_like(real["input_ids"], dtype=torch.bool)

    def loss(inputs, token_mask):
        with balance.on(token_mask) as extra:
            outputs = model(**attention.packed_inputs(model.config, inputs, "cpu", torch.float32), **extra)
        return balance.value(outputs)

    packed_loss, real_loss = loss(batch, mask), loss(real, real_mask)
    assert packed_loss.item() == pytest.approx(real_loss.item(), abs=1e-6)
    assert packed_loss.requires_grad
    # negative control: the model's own loss over the packed rows counts the padding
    own = {"output_router_logits": True} if family in TRANSFORMERS_FAMILIES else {}
    counted = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False, **own).aux_loss
    assert abs(counted.item() - real_loss.item()) > 1e-4


MOE_BLOCKS = {
    "mixtral": ["MixtralSparseMoeBlock"], "qwen2_moe": ["Qwen2MoeSparseMoeBlock"], "qwen3_moe": ["Qwen3MoeSparseMoeBlock"],
    "olmoe": ["OlmoeSparseMoeBlock"], "deepseek_v3": ["DeepseekV3MoE"], "gpt_oss": ["GptOssMLP"],
    "llama_moe": ["LlamaMoESparseBlock"], "moduleformer": ["ModuleFormerMixtureOfMLPs", "ModuleFormerMixtureOfAttentionHeads"],
}


@pytest.mark.parametrize("family", FAMILIES)
def test_zero3_leaf_modules_are_the_blocks_that_hold_routers_and_experts(family):
    """ZeRO-3 must fetch a whole MoE block (router and every expert) at once, or ranks routing to different experts
    hang; the classes come from the routers routemix finds, and accelerate finds them by name in the model."""
    from accelerate.utils.dataclasses import get_module_class_from_name

    from models.families import moe_block_classes

    model = tiny_model(family)
    classes = moe_block_classes(model)
    assert [c.__name__ for c in classes] == MOE_BLOCKS[family]
    for block_class in classes:
        assert get_module_class_from_name(model, block_class.__name__) is block_class
        block = next(m for m in model.modules() if type(m) is block_class)
        names = [name for name, _ in block.named_parameters()]
        assert any("expert" in name for name in names) and any("gate" in name or "router" in name for name in names)


RUN_FAMILIES = ["gpt_oss", "mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v3"]


@pytest.fixture(scope="module")
def run_data(tmp_path_factory):
    from test_bad_input import small_data

    return small_data(tmp_path_factory.mktemp("data"), names=("code", "math", "prose"), per_dataset=24)


@pytest.mark.parametrize("family", RUN_FAMILIES)
def test_twenty_step_dynamic_run_of_a_local_checkpoint(family, tmp_path, run_data):
    """`train.py --model <folder>` on a bf16 checkpoint of the family, as users launch it (in this process, for
    speed): 20 dynamic-mixing steps with gradient checkpointing and the balance loss over real tokens (DeepSeek-V3
    has none), two weight updates from the model's routing, and a bf16 `final/` that `from_pretrained` loads."""
    from safetensors import safe_open

    from test_bad_input import run_main

    model_dir = save_tiny(family, tmp_path / "model", dtype=torch.bfloat16)
    aux = [] if family == "deepseek_v3" else ["--aux-loss-coef", "0.01"]
    out = run_main(tmp_path, "--model", str(model_dir), "--data", str(run_data), "--out", str(tmp_path / "run"),
                   "--max-steps", "20", "--probe-every", "10", "--save-every", "20", "--seq-len", "96",
                   "--micro-batch-size", "2", "--lr", "1e-3", "--gradient-checkpointing", *aux)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == list(range(1, 21))
    assert all(math.isfinite(m["loss"]) for m in metrics) and metrics[-1]["loss"] < metrics[0]["loss"]
    updates = [json.loads(line) for line in (out / "mixture.jsonl").read_text().splitlines()]
    assert [u["step"] for u in updates] == [10, 20]
    histograms = torch.tensor(updates[-1]["histograms"])  # (datasets, layers, experts)
    assert histograms.shape[:2] == (3, 2) and (histograms.sum((1, 2)) > 0).all()
    assert updates[-1]["weights_after"] != updates[0]["weights_before"]
    final = out / "final"
    for shard in final.glob("*.safetensors"):
        with safe_open(shard, "pt") as f:
            assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}
    loaded = AutoModelForCausalLM.from_pretrained(final)
    assert type(loaded).__name__ == type(tiny_model(family)).__name__ and loaded.dtype == torch.bfloat16


def test_balance_loss_is_refused_for_deepseek_v3(tmp_path, run_data):
    from test_bad_input import run_main

    model_dir = save_tiny("deepseek_v3", tmp_path / "model")
    with pytest.raises(ValueError, match="DeepSeek-V3 balances with a score-correction bias"):
        run_main(tmp_path, "--model", str(model_dir), "--data", str(run_data), "--out", str(tmp_path / "run"),
                 "--max-steps", "1", "--aux-loss-coef", "0.01")
