"""What differs between one process and many that accelerate configs cannot say: checks that the launch
runs what it asked for, DeepSpeed's "auto" values that need routemix's flags, and `--debug-checks`
(every rank must hold the same weights and parameters)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, parse_flag_from_env

from run_folder import append_jsonl, truncate_jsonl


def check_launch(accelerator: Accelerator) -> None:
    """Stop or warn when accelerate does not run what the launch asked for."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and accelerator.num_processes == 1:
        raise SystemExit(
            f"launched as {world_size} processes, but accelerate runs each of them alone: each would train its own "
            "model and write the same files. Without GPUs, launch with ACCELERATE_USE_CPU=1 (see docs/distributed.md)."
        )
    for flag, backend in (("ACCELERATE_USE_FSDP", DistributedType.FSDP), ("ACCELERATE_USE_DEEPSPEED", DistributedType.DEEPSPEED)):
        if parse_flag_from_env(flag) and accelerator.distributed_type != backend and accelerator.is_main_process:
            print(f"warning: the accelerate config asks for {backend.value} ({flag}=true) but accelerate runs "
                  f"{accelerator.distributed_type.value} on {accelerator.device.type}: FSDP and DeepSpeed need GPUs; "
                  "parameters are replicated, not sharded")


def fill_deepspeed_auto_values(accelerator: Accelerator, micro_batch_size: int, max_grad_norm: float) -> None:
    """Fill the DeepSpeed config's "auto" micro-batch size and clipping from the command line.

    accelerate takes the micro-batch size from a DataLoader (routemix has none, and stops without it)
    and sets "auto" clipping to 1.0; DeepSpeed clips inside its own step, so `--max-grad-norm` must
    reach it here. Nothing to do without DeepSpeed.
    """
    if accelerator.state.deepspeed_plugin is None:
        return
    config = accelerator.state.deepspeed_plugin.deepspeed_config
    for key, value in (("train_micro_batch_size_per_gpu", micro_batch_size), ("gradient_clipping", max_grad_norm)):
        if config.get(key) == "auto":
            config[key] = value


def assert_same_on_all_ranks(accelerator: Accelerator, what: str, values: torch.Tensor, labels: list[str]) -> None:
    """Stop every rank unless all ranks hold bitwise the same `values` (one number per label)."""
    everyone = accelerator.gather(values.double().to(accelerator.device)[None]).cpu()  # (ranks, n)
    differ = (everyone != everyone[0]).any(0).nonzero().flatten().tolist()
    if differ:
        shown = "; ".join(f"{labels[i]}: {everyone[:, i].tolist()}" for i in differ[:5])
        raise RuntimeError(f"--debug-checks: ranks disagree on {what} ({len(differ)} of {len(labels)} values; by rank) {shown}")


class DebugChecks:
    """`--debug-checks`: stop as soon as ranks drift apart, and log each rank's view to
    `<out>/debug/rank_<r>.jsonl`. Every method does nothing when the checks are off.

    A resumed run (`step` > 0) drops the lines logged after its checkpoint: it redoes those steps.
    """

    def __init__(self, accelerator: Accelerator, out: Path, enabled: bool, step: int = 0):
        self.accelerator, self.enabled = accelerator, enabled
        self.log = out / "debug" / f"rank_{accelerator.process_index}.jsonl"
        if enabled:
            self.log.parent.mkdir(parents=True, exist_ok=True)
            truncate_jsonl(self.log, step)

    def weights(self, step: int, names: list[str], weights: list[float], rank_histograms: torch.Tensor) -> None:
        """After a weight update: every rank must hold bitwise the same sampling weights."""
        if not self.enabled:
            return
        assert_same_on_all_ranks(self.accelerator, f"the sampling weights at step {step}",
                                 torch.tensor(weights, dtype=torch.float64), names)
        append_jsonl(self.log, {"step": step, "probe_histograms": rank_histograms.tolist(), "weights": weights})

    def parameters(self, model, step: int) -> None:
        """After an optimizer step: every rank must hold the same parameters (compared by their float64 sums and
        sums of squares). Skipped where ranks hold only shards (FSDP, ZeRO-3)."""
        if not self.enabled:
            return
        accelerator = self.accelerator
        plugin = accelerator.state.deepspeed_plugin
        if accelerator.distributed_type == DistributedType.FSDP or (plugin is not None and plugin.zero_stage == 3):
            return
        named = list(model.named_parameters())
        checksums = torch.stack([torch.stack([p.detach().double().sum(), p.detach().double().square().sum()])
                                 for _, p in named])
        labels = [f"{name} ({kind})" for name, _ in named for kind in ("sum", "sum of squares")]
        assert_same_on_all_ranks(accelerator, f"the parameters after step {step}", checksums.flatten(), labels)
        append_jsonl(self.log, {"step": step, "parameter_checksum": float(checksums.sum())})
