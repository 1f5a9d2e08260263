"""What differs under DeepSpeed, checked on CPU (DeepSpeed itself needs CUDA and is not installed here): the ZeRO-3
leaf modules that accelerate sets from routemix's MoE blocks, and `--skip-nonfinite`, which cannot work there."""

from types import SimpleNamespace

import pytest
from accelerate.utils import DeepSpeedPlugin, DistributedType
from tiny_families import tiny_model

import distributed
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
