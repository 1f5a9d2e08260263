"""Packed rows are right on every attention kernel: micro-batches of several packed rows give each
example the logits it gets alone, with a negative control for every kernel.

Separate = each example alone in a batch of one row, no `position_ids` (plain causal attention).
Packed = the examples best-fit into rows by `data.collate_packed`, run through `attention.packed_inputs`
as train.py runs them. flash-attn has no CPU kernel: its transformers code path (`_flash_attention_forward`,
the varlen branch included) runs here on a reference varlen kernel made of per-example causal sdpa.
"""

import json

import pytest
import torch
import torch.nn.functional as F
import transformers
import transformers.modeling_flash_attention_utils as flash_utils
from accelerate import Accelerator
from test_capture import COMMON, TINY_MOES, tiny_moe

from lifecycle import config
from lifecycle import preflight
from reading import data
import routing
from reading import sources
import train
from launch import REPO, run_train
from models import TargetHead, attention, load_model, token_loss_sum

# rows of 40 tokens: 17 + 12 + 5 padding, 22 + 9 + 9, 31 + 4 padding (the padding block is its own example)
ROWS = [[17, 12], [22, 9, 9], [31]]
SEQ_LEN = 40


def packed_batch(vocab_size: int, seed: int = 0) -> tuple[dict, list[list[list[int]]]]:
    generator = torch.Generator().manual_seed(seed)
    rows = [[torch.randint(3, vocab_size, (n,), generator=generator).tolist() for n in row] for row in ROWS]
    examples = [[data.Example(ids, ids) for ids in row] for row in rows]
    return data.collate_packed(examples, SEQ_LEN, pad_id=0), rows


@torch.no_grad()
def worst_differences(model, batch: dict, rows, **packed_kwargs) -> tuple[float, float]:
    """Largest |packed - separate| logit difference over all examples, and the same for the negative control
    (the packed rows without anything that keeps the examples apart: no position_ids, no mask, no varlen)."""
    packed = model(**attention.packed_inputs(model.config, batch, "cpu"), **packed_kwargs).logits
    control = model(input_ids=batch["input_ids"], **packed_kwargs).logits
    worst = worst_control = 0.0
    for r, row in enumerate(rows):
        start = 0
        for ids in row:
            alone = model(input_ids=torch.tensor([ids])).logits[0]
            worst = max(worst, (packed[r, start : start + len(ids)] - alone).abs().max().item())
            worst_control = max(worst_control, (control[r, start : start + len(ids)] - alone).abs().max().item())
            start += len(ids)
    return worst, worst_control


@pytest.fixture(scope="module")
def tiny():
    model, _ = load_model("tiny", seed=0, training=False)
    return model.eval()


@pytest.mark.parametrize("kernel", ["eager", "sdpa", "flex_attention", "sdpa_varlen"])
def test_packed_equals_separate_on_several_rows(tiny, kernel):
    tiny.set_attn_implementation(kernel)
    batch, rows = packed_batch(tiny.config.vocab_size)
    worst, worst_control = worst_differences(tiny, batch, rows)
    assert worst <= 1e-5, kernel
    assert worst_control > 1e-2, kernel  # without position_ids the examples see each other


@pytest.mark.parametrize("family", list(TINY_MOES))
def test_every_family_packs_right_on_its_cpu_kernels(family):
    model = tiny_moe(family)
    batch, rows = packed_batch(model.config.vocab_size)
    kernels = [k for k in ("eager", "sdpa") if k in attention.supported_kernels(model)]
    kernels += ["sdpa_varlen"] if "sdpa" in kernels else []
    assert kernels == (["eager"] if family == "gpt_oss" else ["eager", "sdpa", "sdpa_varlen"])
    for kernel in kernels:
        attention.configure(model, torch.device("cpu"), kernel, training=False)
        worst, worst_control = worst_differences(model, batch, rows)
        assert worst <= 1e-5, (family, kernel)
        assert worst_control > 1e-3, (family, kernel)


def test_gpt_oss_needs_the_masks_routemix_builds():
    # GPT-OSS builds its masks without position_ids: left to itself it lets packed examples see each other
    model = tiny_moe("gpt_oss")
    attention.configure(model, torch.device("cpu"), "eager", training=False)
    batch, rows = packed_batch(model.config.vocab_size)
    inputs = attention.packed_inputs(model.config, batch, "cpu")
    assert set(inputs["attention_mask"]) == {"full_attention", "sliding_attention"}
    del inputs["attention_mask"]
    with torch.no_grad():
        own = model(**inputs).logits
        alone = model(input_ids=torch.tensor([rows[0][1]])).logits[0]
    assert (own[0, 17:29] - alone).abs().max().item() > 1e-2


# --------------------------------------------------------------------------- flash-attn's path on a reference kernel


def reference_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,
                     softmax_scale=None, causal=False, window_size=(-1, -1), deterministic=False):
    """flash_attn_varlen_func's contract ((total, heads, dim) tensors, cumulative lengths), as causal sdpa per sequence."""
    assert causal and window_size == (-1, -1) and torch.equal(cu_seqlens_q, cu_seqlens_k)
    assert int(max_seqlen_q) == int(cu_seqlens_q.diff().max())  # transformers' own path passes a tensor
    out = []
    for start, end in zip(cu_seqlens_q.tolist(), cu_seqlens_q[1:].tolist()):
        qs, ks, vs = (x[start:end].transpose(0, 1) for x in (q, k, v))
        out.append(F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, scale=softmax_scale, enable_gqa=True).transpose(0, 1))
    return torch.cat(out)


def reference_flash(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1), deterministic=False):
    """flash_attn_func's contract ((batch, seq, heads, dim)): causal attention over each whole row."""
    out = F.scaled_dot_product_attention(*(x.transpose(1, 2) for x in (q, k, v)), is_causal=causal, scale=softmax_scale, enable_gqa=True)
    return out.transpose(1, 2)


@pytest.fixture
def reference_flash_kernel(monkeypatch):
    process = flash_utils._lazy_define_process_function(reference_varlen)
    monkeypatch.setattr(flash_utils, "lazy_import_flash_attention",
                        lambda *args, **kwargs: ((reference_flash, reference_varlen, None, None, None), (process, process)))


def test_flash_path_gets_the_varlen_arguments(tiny, reference_flash_kernel):
    tiny.config._attn_implementation = "flash_attention_2"  # on CPU only through the reference kernel above
    batch, rows = packed_batch(tiny.config.vocab_size)
    inputs = attention.packed_inputs(tiny.config, batch, "cpu")
    # every example and every padding block of every row, in the flattened micro-batch
    assert inputs["cu_seq_lens_q"].tolist() == [0, 17, 29, 40, 62, 71, 80, 111, 120]
    assert type(inputs["max_length_q"]) is int and inputs["max_length_q"] == 31 and inputs["cu_seq_lens_q"].dtype == torch.int32
    worst, worst_control = worst_differences(tiny, batch, rows)
    assert worst <= 1e-5 and worst_control > 1e-2
    # what transformers does with position_ids alone: right for one row, wrong for several
    # (modeling_flash_attention_utils._is_packed_sequence)
    with torch.no_grad():
        several = tiny(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits
        one_row = tiny(input_ids=batch["input_ids"][1:2], position_ids=batch["position_ids"][1:2]).logits[0]
        alone = tiny(input_ids=torch.tensor([rows[1][1]])).logits[0]
    assert (one_row[22:31] - alone).abs().max().item() <= 1e-5
    assert (several[1, 22:31] - alone).abs().max().item() > 1e-2
    tiny.config._attn_implementation = "sdpa"


# --------------------------------------------------------------------------- the kernel a model gets


def test_kernel_choice_follows_what_the_model_supports():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    qwen, gpt_oss = tiny_moe("qwen3_moe"), tiny_moe("gpt_oss")
    assert attention.default_kernel(qwen, cpu) == "sdpa"
    assert attention.default_kernel(gpt_oss, cpu) == "eager"
    assert attention.default_kernel(gpt_oss, cuda) == "flex_attention"  # never sdpa, never flash-attn (sinks)
    assert attention.has_attention_sinks(gpt_oss) and not attention.has_attention_sinks(qwen)
    for kernel, device, message in [
        ("sdpa", cpu, "GptOssForCausalLM supports eager, flex_attention, flash_attention_2"),
        ("flash_attention_2", cuda, "has attention sinks, which flash_attention_2 would drop; use flex_attention or eager"),
        ("flex_attention", cpu, "attention sinks run under flex_attention on CUDA only; use eager on cpu"),
    ]:
        with pytest.raises(ValueError, match=message):
            attention.check_kernel(gpt_oss, kernel, device, training=False)
    with pytest.raises(ValueError, match="--attn-implementation flex_attention trains on CUDA only .* --probe-only, or train with sdpa"):
        attention.check_kernel(qwen, "flex_attention", cpu, training=True)
    attention.check_kernel(qwen, "flex_attention", cpu, training=False)  # the probe: forward only
    attention.check_kernel(qwen, "sdpa_varlen", cpu, training=True)
    with pytest.raises(ValueError, match=r"supports eager, flex_attention, flash_attention_2, flash_attention_3 \(sdpa_varlen where sdpa is\)"):
        attention.check_kernel(gpt_oss, "sdpa_varlen", cpu, training=False)
    with pytest.raises(ValueError, match="flash_attention_2 runs on CUDA only"):
        attention.check_kernel(qwen, "flash_attention_2", cpu, training=True)
    olmoe = tiny_moe("olmoe")
    with pytest.raises(ValueError, match="OlmoeForCausalLM supports eager, sdpa, flash_attention_2"):
        attention.check_kernel(olmoe, "flex_attention", cuda, training=True)


# --------------------------------------------------------------------------- the probe, as users run it


def test_probe_only_histograms_are_identical_across_kernels(tmp_path):
    histograms = {}
    for kernel in ("eager", "sdpa", "flex_attention"):
        out = tmp_path / kernel
        result = run_train(out, "--probe-only", "--attn-implementation", kernel)
        assert result.returncode == 0, result.stderr[-3000:]
        (line,) = (out / "mixture.jsonl").read_text().splitlines()
        histograms[kernel] = json.loads(line)["histograms"]
    assert histograms["eager"] == histograms["sdpa"] == histograms["flex_attention"]
    # negative control: the same probe batches with the packing left out route differently
    model, tokenizer = load_model("tiny", seed=0, training=False)
    _, dev_sets = sources.load_train_dev(REPO / "data" / "demo")
    args = config.resolve_defaults(config.Args())
    preflight.apply_model_defaults(args)
    batches = train.make_probe_batches(dev_sets, tokenizer, args)
    unpacked = {name: [{**b, "position_ids": torch.arange(args.seq_len).expand_as(b["position_ids"])} for b in bs]
                for name, bs in batches.items()}
    capture = routing.RoutingCapture(routing.find_routers(model))
    accelerator = Accelerator(cpu=True)
    probed = {name: train.probe(model, train.DevProbe(b, TargetHead(model), capture, response_only=False), accelerator)[0].tolist()
              for name, b in (("packed", batches), ("unpacked", unpacked))}
    assert probed["packed"] == histograms["sdpa"]  # the in-process probe is the subprocess's
    assert probed["unpacked"] != probed["packed"]


def test_sdpa_varlen_keeps_sliding_windows_and_trains():
    # Mixtral with a sliding window shorter than the examples: the window is kept inside each example
    config_class, overrides = TINY_MOES["mixtral"]
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config_class(**{**COMMON, **overrides, "sliding_window": 6}))
    model.config.use_cache = False
    batch, rows = packed_batch(model.config.vocab_size)
    for kernel in ("sdpa", "sdpa_varlen"):
        attention.configure(model, torch.device("cpu"), kernel, training=True)
        worst, _ = worst_differences(model.eval(), batch, rows)
        assert worst <= 1e-5, kernel
    # and its gradients are sdpa's
    grads = {}
    for kernel in ("sdpa", "sdpa_varlen"):
        attention.configure(model, torch.device("cpu"), kernel, training=True)
        model.train().zero_grad(set_to_none=True)
        token_loss_sum(model(**attention.packed_inputs(model.config, batch, "cpu")).logits, batch["labels"]).backward()
        grads[kernel] = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    assert relative(grads["sdpa_varlen"], grads["sdpa"]) <= 1e-5


def relative(a, b):
    return ((a - b).norm() / b.norm()).item()
