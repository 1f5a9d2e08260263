"""What differs under DeepSpeed, checked on CPU (DeepSpeed itself needs CUDA and is not installed here): the ZeRO-3
leaf modules that accelerate sets from routemix's MoE blocks, and `--skip-nonfinite`, which cannot work there."""

from types import SimpleNamespace

import pytest
from accelerate.utils import DeepSpeedPlugin, DistributedType
from tiny_families import tiny_model

from lifecycle import distributed
from launch import REPO
from models.families import moe_block_classes


def accelerator_with(plugin) -> SimpleNamespace:
    return SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=plugin))


def test_zero3_leaf_modules_come_from_the_routers_blocks(monkeypatch):
    monkeypatch.delenv("ACCELERATE_DEEPSPEED_MOE_LAYER_CLS_NAMES", raising=False)
    blocks = moe_block_classes(tiny_model("moduleformer"))
    plugins = {name: DeepSpeedPlugin(hf_ds_config=str(REPO / "configs" / "deepspeed" / f"{name}.json"))
               for name in ("zero2", "zero3", "zero3_offload")}
    for name, plugin in plugins.items():
        distributed.set_zero3_leaf_modules(accelerator_with(plugin), blocks)
    # accelerate's prepare hands these names to deepspeed.utils.set_z3_leaf_modules (DeepSpeedPlugin.set_moe_leaf_modules)
    assert plugins["zero3"].transformer_moe_cls_names == "ModuleFormerMixtureOfMLPs,ModuleFormerMixtureOfAttentionHeads"
    assert plugins["zero3_offload"].transformer_moe_cls_names == plugins["zero3"].transformer_moe_cls_names
    assert plugins["zero2"].transformer_moe_cls_names is None  # ZeRO-1/2 do not fetch parameters per module
    distributed.set_zero3_leaf_modules(accelerator_with(None), blocks)  # no DeepSpeed: nothing to do
    # a list the user gave (--deepspeed_moe_layer_cls_names) is kept
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_MOE_LAYER_CLS_NAMES", "MyBlock")
    mine = DeepSpeedPlugin(hf_ds_config=str(REPO / "configs" / "deepspeed" / "zero3.json"))
    distributed.set_zero3_leaf_modules(accelerator_with(mine), blocks)
    assert mine.transformer_moe_cls_names == "MyBlock"


def test_skip_nonfinite_is_refused_under_deepspeed_and_the_stop_message_says_what_happened():
    deepspeed, ddp = (SimpleNamespace(distributed_type=t) for t in (DistributedType.DEEPSPEED, DistributedType.MULTI_GPU))
    with pytest.raises(SystemExit, match="--skip-nonfinite 3 cannot work under DeepSpeed: its optimizer step runs inside"):
        distributed.check_skip_nonfinite(deepspeed, 3)
    distributed.check_skip_nonfinite(deepspeed, 0)
    distributed.check_skip_nonfinite(ddp, 3)
    assert distributed.nonfinite_outcome(ddp) == "stopped without updating the model or saving"
    assert "optimizer step had already run inside the backward" in distributed.nonfinite_outcome(deepspeed)


def test_gradient_checkpointing_under_fsdp2_gives_the_ddp_losses(tmp_path):
    """FSDP2 (forced onto gloo, as in test_distributed.py) with --gradient-checkpointing: transformers checkpoints each
    layer's forward with FSDP2's hooks outside it; the losses are DDP's without checkpointing."""
    import subprocess
    import sys

    from test_distributed import ENV, FSDP2_ON_CPU, free_port, read_jsonl, run_two

    steps = ["--micro-batch-size", "4", "--seq-len", "128", "--probe-batches", "1", "--max-steps", "4", "--probe-every", "4",
             "--save-every", "4", "--log-every", "1", "--seed", "3"]
    ddp = run_two(tmp_path / "ddp", *steps)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    script = tmp_path / "fsdp2_on_cpu.py"
    script.write_text(FSDP2_ON_CPU.format(repo=str(REPO)))
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", "configs/fsdp2.yaml", "--num_processes",
               "2", "--main_process_port", str(free_port()), str(script), "--out", str(tmp_path / "fsdp2"), *steps,
               "--gradient-checkpointing"]
    fsdp2 = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert fsdp2.returncode == 0, fsdp2.stderr[-3000:]
    expected = [m["loss"] for m in read_jsonl(tmp_path / "ddp" / "metrics.jsonl")]
    assert [m["loss"] for m in read_jsonl(tmp_path / "fsdp2" / "metrics.jsonl")] == pytest.approx(expected, rel=1e-5)
