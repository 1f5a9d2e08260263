"""Memory at scale, on CPU: gradient checkpointing changes nothing but memory, bf16 logits are never copied to
float32 whole, weights load in the dtype each engine needs, and the final export keeps the checkpoint's dtype."""

import json
from types import SimpleNamespace

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import DistributedType
from safetensors import safe_open
from tiny_families import save_tiny, save_tiny_mxfp4_gpt_oss
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import AutoModelForCausalLM

from reading import data
from lifecycle import distributed
import models
from models import TargetHead, attention, load_model
from models.export import save_final
from models.families import BalanceLoss


def fresh_accelerator(**kwargs) -> Accelerator:
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    return Accelerator(cpu=True, **kwargs)


def packed_batch(vocab_size: int, rows: int = 4, seq_len: int = 48, seed: int = 0) -> dict[str, torch.Tensor]:
    """Rows of 3 examples (8-14 tokens) with trailing padding; the second half of each example is its assistant part."""
    generator = torch.Generator().manual_seed(seed)
    placed = []
    for _ in range(rows):
        row = []
        for n in torch.randint(8, 15, (3,), generator=generator).tolist():
            ids = torch.randint(4, vocab_size, (n,), generator=generator).tolist()
            row.append(data.Example(ids, [data.IGNORE_INDEX] * (n // 2) + ids[n // 2 :]))
        placed.append(row)
    return data.collate_packed(placed, seq_len, pad_id=0)


def loss_and_gradients(model, batch, aux_loss_coef: float = 0.0, seed: int = 0):
    """One forward and backward as train.py runs it: logits at targets only, loss per target, balance loss over real tokens."""
    head, balance = TargetHead(model), BalanceLoss(model) if aux_loss_coef else None
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # the same gate noise in every run
    with head.on(batch["labels"]) as targets, (balance.on(batch["token_mask"]) if balance else torch.enable_grad()) as extra:
        outputs = model(**attention.packed_inputs(model.config, batch, "cpu", torch.float32), **(extra or {}))
    loss = head.loss_sum(outputs.logits, targets, batch["labels"]) / len(targets)
    if balance:
        loss = loss + aux_loss_coef * balance.value(outputs)
    loss.backward()
    return loss.item(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("family", ["qwen3_moe", "llama_moe", "gpt_oss"])
def test_gradient_checkpointing_gives_the_same_losses_and_gradients(family, tmp_path):
    """LLaMA-MoE draws gate noise in train mode: the recompute must draw the same (the RNG state is preserved)."""
    model, tokenizer = load_model(str(save_tiny(family, tmp_path / family)))
    model.train()
    batch = packed_batch(len(tokenizer))
    for router in [m for _, m in __import__("routing").find_routers(model)]:
        router.requires_grad_(False)  # as --freeze-router
    plain_loss, plain = loss_and_gradients(model, batch, aux_loss_coef=0.01)
    distributed.enable_gradient_checkpointing(SimpleNamespace(state=SimpleNamespace(fsdp_plugin=None)), model)
    assert all(layer.gradient_checkpointing for layer in model.model.layers)
    checkpointed_loss, checkpointed = loss_and_gradients(model, batch, aux_loss_coef=0.01)
    assert checkpointed_loss == pytest.approx(plain_loss, abs=1e-5)
    assert plain.keys() == checkpointed.keys() and any("expert" in name for name in plain)
    assert max((plain[k] - checkpointed[k]).abs().max().item() for k in plain) <= 1e-5
    if family == "llama_moe":  # negative control: other noise in the second run gives other gradients
        _, reseeded = loss_and_gradients(model, batch, aux_loss_coef=0.01, seed=1)
        assert max((plain[k] - reseeded[k]).abs().max().item() for k in plain) > 1e-4


def test_gradient_checkpointing_on_transformers_before_5_2_is_the_non_reentrant_kind():
    """Older transformers (the GPU images') have only `gradient_checkpointing_enable`, reentrant by default, which
    under frozen embeddings computes no gradient at all; 5.2x delegates that name to the new one, so the
    older API is stood in for by a model that has only it."""
    calls = []
    old_model = SimpleNamespace(gradient_checkpointing_enable=lambda **kwargs: calls.append(kwargs))
    distributed.enable_gradient_checkpointing(SimpleNamespace(state=SimpleNamespace(fsdp_plugin=None)), old_model)
    assert calls == [{"gradient_checkpointing_kwargs": {"use_reentrant": False}}]


def test_fsdp_activation_checkpointing_from_the_config_is_refused():
    accelerator = SimpleNamespace(state=SimpleNamespace(fsdp_plugin=SimpleNamespace(activation_checkpointing=True)))
    with pytest.raises(SystemExit, match="does not preserve the random state.*--gradient-checkpointing"):
        distributed.enable_gradient_checkpointing(accelerator, torch.nn.Linear(1, 1))


class Float32OfShape(TorchDispatchMode):
    """Records every operation whose result is a float32 tensor of `shape`."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape, self.seen = shape, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float32 and tuple(tensor.shape) == self.shape:
                self.seen.append(str(func))
        return out


def test_bf16_training_never_holds_float32_logits_of_all_targets(monkeypatch):
    """On one process (and DDP) accelerate converts every bf16 output of a prepared model to float32; with that
    conversion dropped, the loss upcasts the logits one chunk at a time, and the result is the same."""
    vocab_size = json.loads((models.TINY_DIR / "config.json").read_text())["vocab_size"]
    monkeypatch.setattr(models, "LOSS_CHUNK_ELEMENTS", 16 * vocab_size)  # 16 target rows per chunk
    batch = packed_batch(vocab_size)
    n_targets = int((batch["labels"][:, 1:] != data.IGNORE_INDEX).sum())
    assert n_targets > 3 * 16  # several chunks

    def step(drop_conversion: bool):
        accelerator = fresh_accelerator(mixed_precision="bf16")
        model, _ = load_model("tiny", seed=0)
        head = TargetHead(model)
        model = accelerator.prepare(model)
        if drop_conversion:
            distributed.drop_fp32_output_conversion(accelerator, model)
        assert model.config.vocab_size == vocab_size
        recorder = Float32OfShape((n_targets, vocab_size))
        with recorder:
            with head.on(batch["labels"]) as targets:
                logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits
            loss = head.loss_sum(logits, targets, batch["labels"])
            loss.backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
        return logits.dtype, loss.item(), grads, recorder.seen

    converted_dtype, reference_loss, reference, seen_converted = step(drop_conversion=False)
    dtype, loss, grads, seen = step(drop_conversion=True)
    assert converted_dtype == torch.float32 and seen_converted  # negative control: accelerate's float32 copy
    assert dtype == torch.bfloat16 and seen == []  # autocast kept, no float32 (targets x vocab) tensor anywhere
    assert loss == pytest.approx(reference_loss, rel=1e-6)
    assert max(((grads[k] - reference[k]).abs().max() / reference[k].abs().max().clamp(min=1e-12)).item() for k in grads) <= 1e-5


def test_weights_load_in_the_dtype_each_engine_needs():
    bf16, fp32 = torch.bfloat16, torch.float32
    for engine, bf16_flag, checkpoint, expected in [
        (DistributedType.NO, True, bf16, fp32),  # torch AdamW over bf16 weights loses small updates
        (DistributedType.MULTI_GPU, True, bf16, fp32),
        (DistributedType.FSDP, True, bf16, bf16),  # accelerate upcasts the trainable shards to float32 masters
        (DistributedType.FSDP, True, fp32, fp32),  # never round a float32 checkpoint
        (DistributedType.DEEPSPEED, True, fp32, bf16),  # DeepSpeed's bf16 optimizer keeps float32 masters
        (DistributedType.DEEPSPEED, False, bf16, fp32),
        (DistributedType.FSDP, False, bf16, fp32),
    ]:
        assert distributed.weights_dtype(SimpleNamespace(distributed_type=engine), bf16_flag, checkpoint) == expected


def test_export_of_a_bf16_checkpoint_is_bf16_sharded_and_loads(tmp_path):
    source = save_tiny("qwen3_moe", tmp_path / "source", dtype=torch.bfloat16)
    assert models.checkpoint_dtype(str(source)) == torch.bfloat16 and models.checkpoint_dtype("tiny") == torch.float32
    accelerator = fresh_accelerator(mixed_precision="bf16")
    model, tokenizer = load_model(str(source), dtype=distributed.weights_dtype(accelerator, True, torch.bfloat16))
    assert next(model.parameters()).dtype == torch.float32  # one process: float32 master weights
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 1e-3)  # "trained": no longer the bf16 values it loaded
    model = accelerator.prepare(model)
    final = tmp_path / "final"
    save_final(accelerator, model, tokenizer, final, torch.bfloat16, max_shard_size="100KB")

    shards = sorted(final.glob("model-*.safetensors"))
    assert len(shards) > 1 and (final / "model.safetensors.index.json").exists()
    for shard in shards:
        with safe_open(shard, "pt") as f:
            assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}
    assert json.loads((final / "config.json").read_text())["dtype"] == "bfloat16"
    loaded = AutoModelForCausalLM.from_pretrained(final)
    assert next(loaded.parameters()).dtype == torch.bfloat16
    trained = accelerator.unwrap_model(model).state_dict()
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, trained[name].to(torch.bfloat16)), name
    assert loaded.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=3, do_sample=False).shape == (1, 6)


def test_mxfp4_experts_are_dequantized_for_training(tmp_path, capsys):
    expected = save_tiny_mxfp4_gpt_oss(tmp_path / "gpt_oss")
    assert json.loads((tmp_path / "gpt_oss" / "config.json").read_text())["quantization_config"]["quant_method"] == "mxfp4"
    model, _ = load_model(str(tmp_path / "gpt_oss"))
    assert "MXFP4 experts are dequantized for training" in capsys.readouterr().out
    state = model.state_dict()
    for name, values in expected.items():
        assert state[name].dtype == torch.float32 and torch.equal(state[name], values), name  # exactly the encoded values
    assert getattr(model.config, "quantization_config", None) is None  # the export will be plain weights
    model.train()
    model(input_ids=torch.tensor([[5, 6, 7, 8]]), labels=torch.tensor([[5, 6, 7, 8]])).loss.backward()
    assert model.model.layers[0].mlp.experts.gate_up_proj.grad.abs().sum() > 0
