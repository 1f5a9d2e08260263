"""Every supported MoE family, loaded through `load_model` from a saved folder as users load it:

- packed rows (>= 2 per micro-batch, trailing padding) give the logits and the routing histograms of
  each example run alone, on every attention kernel the family supports on CPU, with a negative
  control (the same rows without `position_ids`; for GPT-OSS also without routemix's mask hook);
- the load-balancing loss counts real tokens only: a padded packed batch has the loss of its real
  tokens alone, where the model's own loss (negative control) counts the padding.
"""

import pytest
import torch
from tiny_families import FAMILIES, TRANSFORMERS_FAMILIES, save_tiny
from transformers import AutoModelForCausalLM

import data
import routing
from models import load_model
from models.families import BalanceLoss

# Example lengths packed into 2 rows of 16 (row 0: 7 + 9, row 1: 5 + 6 + 5 padding). Positions 10..15 of
# row 0's second example lie outside GPT-OSS's sliding window of 6 from the first: its layers are covered.
LENGTHS = [7, 9, 5, 6]
ROWS = [[0, 1], [2, 3]]
SEQ_LEN = 16


def kernels(family: str) -> list[str]:
    """The attention kernels a family supports that run on CPU: GPT-OSS has no sdpa and its attention sinks
    have no CPU flex_attention; OLMoE declares no flex_attention; ModuleFormer's stick-breaking attention
    ignores the setting."""
    return {"gpt_oss": ["eager"], "olmoe": ["eager", "sdpa"], "moduleformer": ["eager"]}.get(
        family, ["eager", "sdpa", "flex_attention"])


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


def run(model, capture, input_ids, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and the (L, E) routing histogram of one forward, all tokens counted."""
    with torch.no_grad():
        logits = model(input_ids=input_ids, use_cache=False, **kwargs).logits
    return logits, capture.histogram(torch.ones(input_ids.shape, dtype=torch.bool))


@pytest.mark.parametrize("family", FAMILIES)
def test_packed_rows_equal_separate_examples_on_every_kernel(family, checkpoints):
    model, tokenizer = load_model(str(checkpoints[family]), attn_implementation="eager")
    model.eval()
    parts = examples(len(tokenizer))
    with routing.RoutingCapture(routing.find_routers(model)) as capture:
        alone = [run(model, capture, torch.tensor([e.input_ids])) for e in parts]
    batch = packed_batch(len(tokenizer))
    mask = batch["token_mask"]
    expected_histogram = sum(histogram for _, histogram in alone)

    for kernel in kernels(family):
        model, _ = load_model(str(checkpoints[family]), attn_implementation=kernel)
        model.eval()
        assert model.config._attn_implementation == kernel
        with routing.RoutingCapture(routing.find_routers(model)) as capture:
            with torch.no_grad():
                logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
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

    if family == "gpt_oss":  # transformers' GPT-OSS alone ignores the packing in position_ids (fixed in load_model)
        plain = AutoModelForCausalLM.from_pretrained(checkpoints[family], attn_implementation="eager").eval()
        with torch.no_grad():
            ignored = plain(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        assert (ignored[mask] - logits[mask]).abs().max().item() > 1e-3


@pytest.mark.parametrize("family", FAMILIES)
def test_balance_loss_counts_real_tokens_only(family, checkpoints):
    model, tokenizer = load_model(str(checkpoints[family]), attn_implementation="eager")
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

    def loss(inputs, token_mask, **extra):
        outputs = model(**inputs, use_cache=False, **balance.forward_kwargs(token_mask), **extra)
        return balance(outputs, token_mask), outputs

    packed_loss, outputs = loss({k: batch[k] for k in real}, mask)
    real_loss, _ = loss(real, real_mask)
    assert packed_loss.item() == pytest.approx(real_loss.item(), abs=1e-6)
    assert packed_loss.requires_grad
    # negative control: the model's own loss over the packed rows counts the padding
    if family in TRANSFORMERS_FAMILIES:
        counted = outputs.aux_loss
    else:
        counted = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).aux_loss
    assert abs(counted.item() - real_loss.item()) > 1e-4
