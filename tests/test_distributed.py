"""Two CPU processes (DDP over gloo), launched the way docs/distributed.md tells users to.

- a probe split over 2 ranks gives exactly the histograms and weights of 1 process;
- a dynamic run keeps both ranks' parameters and weights bitwise equal (`--debug-checks`), and the
  logged histograms are the sum of the two ranks' shares;
- that run, SIGKILLed after a checkpoint and launched again, resumes exactly (bitwise on CPU);
- a SIGTERM to one rank only stops both ranks after the same step, with a complete checkpoint of it, and the run
  resumes exactly;
- the debug checks do catch ranks that disagree (negative control);
- a multi-process launch that accelerate would run as independent single processes stops;
- FSDP2, forced onto gloo (accelerate never picks it on CPU), writes sharded checkpoints, resumes,
  and ends where DDP ends (within float tolerance), with a full safetensors export.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest
import torch
from safetensors.torch import load_file

from launch import CRASH_IN_SAVE, REPO, run_train, start, wait_for_steps

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "ACCELERATE_USE_CPU": "1"}
PROBE = ["--probe-batches", "3", "--micro-batch-size", "4", "--seq-len", "128"]  # 3 batches: rank 0 runs 2, rank 1 runs 1
RUN = [*PROBE, "--max-steps", "8", "--probe-every", "3", "--save-every", "4", "--log-every", "1", "--seed", "3", "--debug-checks"]


def free_port() -> int:
    """A free TCP port for the rendezvous, so that concurrent runs do not collide on accelerate's default 29500."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_two(out, *extra, config="configs/ddp_cpu.yaml") -> list[str]:
    """`accelerate launch --config_file CONFIG --num_processes 2 train.py --out OUT ...` with this interpreter."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config, "--num_processes", "2",
            "--main_process_port", str(free_port()), "train.py", "--out", str(out), *extra]


def run_two(out, *extra, config="configs/ddp_cpu.yaml", env=ENV) -> subprocess.CompletedProcess:
    return subprocess.run(launch_two(out, *extra, config=config), cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_probe_on_two_processes_equals_one_process(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    # --delta-noise 0: on the untrained tiny model the demo's deltas lie within their noise, and the default would
    # keep the weights uniform; here they must move, so that equal weights say something
    result = run_train(one, "--probe-only", "--delta-noise", "0", *PROBE)
    assert result.returncode == 0, result.stderr[-3000:]
    # the FSDP config on CPU: accelerate falls back to DDP, and train.py says so
    result = run_two(two, "--probe-only", "--delta-noise", "0", *PROBE, config="configs/fsdp2.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "asks for FSDP (ACCELERATE_USE_FSDP=true) but accelerate runs MULTI_CPU" in result.stdout

    [expected], [got] = read_jsonl(one / "mixture.jsonl"), read_jsonl(two / "mixture.jsonl")
    assert got["histograms"] == expected["histograms"]  # integer counts: exact
    assert got["probe_tokens"] == expected["probe_tokens"] and min(got["probe_tokens"]) > 0
    assert got["delta_se"] == expected["delta_se"]  # from the same counts per probe batch: bitwise
    assert got["weights_after"] == expected["weights_after"]  # computed from the same counts: bitwise
    assert got["weights_after"] != got["weights_before"]
    assert got["dev_loss"] == pytest.approx(expected["dev_loss"], rel=1e-12)  # float64 sums, added in another order
    assert json.loads((two / "probe_weights.json").read_text()) == json.loads((one / "probe_weights.json").read_text())


def comparable(out):
    """What an exact resume must reproduce: per-step losses, mixture updates, final weights, final model,
    and each rank's own log of its probe share and parameter checksums."""
    metrics = read_jsonl(out / "metrics.jsonl")
    for record in metrics:
        del record["tokens_per_s"]  # wall-clock
    updates = read_jsonl(out / "mixture.jsonl")
    for record in updates:
        del record["seconds"]  # wall-clock
    weights = json.loads((out / "final" / "mixture_weights.json").read_text())
    model = load_file(out / "final" / "model.safetensors")
    ranks = [read_jsonl(out / "debug" / f"rank_{rank}.jsonl") for rank in (0, 1)]
    return metrics, updates, weights, model, ranks


def kill_after_checkpoint(command: list[str], out, step: int) -> None:
    """Start `command`, SIGKILL both training processes, then the launcher, once checkpoint `step` is complete.
    (torch's launcher starts each worker in its own session, so killing the launcher's group would miss them.)"""
    process = subprocess.Popen(command, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    marker = out / "checkpoints" / f"step_{step}" / "COMPLETE"
    deadline = time.time() + 240
    while not marker.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    workers = psutil.Process(process.pid).children(recursive=True)
    for worker in workers:
        worker.kill()
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    psutil.wait_procs(workers, timeout=30)
    assert marker.exists() and not (out / "final").exists(), "the run must be killed mid-training"


def assert_same_run(got, expected) -> None:
    assert got[0] == expected[0]  # per-step losses, learning rates, token counts, weights: bitwise
    assert got[1] == expected[1]  # mixture updates, histograms included
    assert got[2] == expected[2]
    assert got[3].keys() == expected[3].keys() and all(torch.equal(got[3][k], expected[3][k]) for k in expected[3])
    assert got[4] == expected[4]  # each rank's parameter checksums and probe shares, step by step


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """An uninterrupted 2-process DDP run of RUN: the reference of the resume and FSDP2 tests."""
    out = tmp_path_factory.mktemp("ddp") / "uninterrupted"
    result = run_two(out, *RUN)
    assert result.returncode == 0, result.stderr[-3000:]
    return comparable(out)


def test_two_processes_stay_in_sync_and_resume_exactly(tmp_path, ddp_run):
    expected = ddp_run
    metrics, updates, weights, model, (rank0, rank1) = expected

    # parameters: both ranks logged the same checksum after every optimizer step, and training moved them
    checksums = [[r["parameter_checksum"] for r in log if "parameter_checksum" in r] for log in (rank0, rank1)]
    assert len(checksums[0]) == 8 and checksums[0] == checksums[1]
    assert len(set(checksums[0])) == 8
    # probes at steps 3, 6, 8: the same weights on both ranks; the logged histograms are the sum of the two shares
    probes = [[r for r in log if "probe_histograms" in r] for log in (rank0, rank1)]
    assert [u["step"] for u in updates] == [r["step"] for r in probes[0]] == [r["step"] for r in probes[1]] == [3, 6, 8]
    for update, share0, share1 in zip(updates, *probes):
        assert share0["weights"] == share1["weights"] == update["weights_after"]
        total = torch.tensor(share0["probe_histograms"]) + torch.tensor(share1["probe_histograms"])
        assert total.tolist() == update["histograms"]
        # rank 0 ran probe batches 0 and 2, rank 1 batch 1 (and a forward of batch 0 that it must not count)
        assert (torch.tensor(share1["probe_histograms"]).sum((1, 2)) > 0).all()
        assert (torch.tensor(share0["probe_histograms"]) != torch.tensor(share1["probe_histograms"])).any()
    assert [m["step"] for m in metrics] == list(range(1, 9)) and metrics[-1]["loss"] < metrics[0]["loss"]
    assert weights == dict(zip(updates[-1]["names"], updates[-1]["weights_after"]))

    # killed once the step-4 checkpoint is complete, then launched again with the same command
    killed = tmp_path / "killed"
    kill_after_checkpoint(launch_two(killed, *RUN), killed, step=4)
    assert sorted(p.name for p in (killed / "checkpoints" / "step_4").glob("routemix_state_*.json")) == [
        "routemix_state_0.json", "routemix_state_1.json"]
    result = run_two(killed, *RUN)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "checkpoints/step_4 at step 4" in result.stdout
    assert_same_run(comparable(killed), expected)
    # a DDP checkpoint is a model too: its weights under the model's own names (with DDP's `module.`-prefixed ones
    # from_pretrained would initialise the model afresh), equal to final/
    from transformers import AutoModelForCausalLM

    step_8 = load_file(killed / "checkpoints" / "step_8" / "model.safetensors")
    assert not [k for k in step_8 if k.startswith("module.")]
    ids = torch.arange(24).reshape(2, 12)
    with torch.no_grad():
        logits = [AutoModelForCausalLM.from_pretrained(path).eval()(input_ids=ids).logits
                  for path in (killed / "checkpoints" / "step_8", killed / "final")]
    assert torch.equal(*logits)

    # killed inside the step-8 save (both ranks' files written, the marker not yet): launched again, the
    # incomplete checkpoint is removed and the run resumes from step 4
    crashed = tmp_path / "crashed"
    script = tmp_path / "crash_in_save.py"
    script.write_text(CRASH_IN_SAVE)
    command = launch_two(crashed, *RUN)
    command[command.index("train.py")] = str(script)
    subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    incomplete = crashed / "checkpoints" / "step_8"
    assert sorted(p.name for p in incomplete.glob("routemix_state_*.json")) == ["routemix_state_0.json", "routemix_state_1.json"]
    assert not (incomplete / "COMPLETE").exists() and not (crashed / "final").exists()
    result = run_two(crashed, *RUN)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"removing {incomplete}" in result.stdout and "checkpoints/step_4 at step 4" in result.stdout
    assert_same_run(comparable(crashed), expected)


def test_sigterm_to_one_rank_stops_every_rank_after_the_same_step_and_resumes_exactly(tmp_path, ddp_run):
    out = tmp_path / "stopped"
    launcher = start(launch_two(out, *RUN), tmp_path / "logs", env=ENV)
    wait_for_steps(out, 2, launcher)
    ranks = {int(worker.environ()["RANK"]): worker for worker in psutil.Process(launcher.pid).children(recursive=True)
             if "train.py" in " ".join(worker.cmdline())}
    assert sorted(ranks) == [0, 1]
    ranks[1].send_signal(signal.SIGTERM)  # as when a node-local agent signals only its own processes
    try:
        assert launcher.wait(timeout=300) != 0  # torch's launcher reports a stopped rank as a failure
    finally:  # ranks that disagreed would wait for each other: leave none behind
        for worker in [*ranks.values(), psutil.Process(launcher.pid)] if launcher.poll() is None else []:
            worker.kill()
    stderr = (tmp_path / "logs" / "stderr").read_text()
    stopped = [line for line in stderr.splitlines() if line.startswith("routemix: stopped by SIGTERM after step ")]
    assert len(stopped) == 1, stderr[-3000:]  # rank 0 says it, though only rank 1 got the signal
    step = int(stopped[0].split("after step ")[1].split(" ")[0])
    assert 2 <= step < 8
    folder = out / "checkpoints" / f"step_{step}"
    assert (folder / "COMPLETE").exists()
    assert [json.loads((folder / f"routemix_state_{rank}.json").read_text())["step"] for rank in (0, 1)] == [step, step]

    result = run_two(out, *RUN)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"checkpoints/step_{step} at step {step}" in result.stdout
    assert_same_run(comparable(out), ddp_run)


# accelerate runs FSDP only on accelerators; this subclass switches its FSDP2 path on for gloo/CPU, so that
# train.py's FSDP2 code (probe collectives, clipping of sharded gradients, sharded checkpoints, the full
# state dict export) runs here. The FSDP settings come from configs/fsdp2.yaml through the launcher.
FSDP2_ON_CPU = """
import sys
sys.path.insert(0, {repo!r})
sys.argv[0] = "train.py"
import tyro
from accelerate import Accelerator, PartialState
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin
import train

class FSDP2OnCPU(Accelerator):
    distributed_type = property(lambda self: DistributedType.FSDP)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.state.fsdp_plugin = FullyShardedDataParallelPlugin()
        self.state.distributed_type = PartialState().distributed_type = DistributedType.FSDP

train.Accelerator = FSDP2OnCPU
train.main(tyro.cli(train.Args))
"""


def test_fsdp2_forced_on_cpu_resumes_and_matches_ddp(tmp_path, ddp_run):
    script = tmp_path / "fsdp2_on_cpu.py"
    script.write_text(FSDP2_ON_CPU.format(repo=str(REPO)))

    def command(out):
        return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", "configs/fsdp2.yaml", "--num_processes",
                "2", "--main_process_port", str(free_port()), str(script), "--out", str(out), *RUN]

    # killed after the step-4 checkpoint and launched again, then compared with the uninterrupted DDP run: a resume
    # that lost any state (sampler, optimizer, RNG) would draw other data or take other steps, far beyond 1e-5
    killed = tmp_path / "killed"
    kill_after_checkpoint(command(killed), killed, step=4)
    shards = killed / "checkpoints" / "step_4" / "pytorch_model_fsdp_0"
    assert sorted(p.name for p in shards.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]  # one shard per rank
    result = subprocess.run(command(killed), cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "checkpoints/step_4 at step 4" in result.stdout
    metrics, updates, weights, model, ranks = comparable(killed)

    ddp_metrics, ddp_updates, ddp_weights, ddp_model, _ = ddp_run
    assert [m["loss"] for m in metrics] == pytest.approx([m["loss"] for m in ddp_metrics], rel=1e-5)
    assert weights == pytest.approx(ddp_weights, abs=1e-6)
    assert model.keys() == ddp_model.keys()  # the gathered full state dict: every tensor, unsharded names
    assert all(model[k].shape == ddp_model[k].shape for k in model)
    assert max((model[k] - ddp_model[k]).abs().max().item() for k in model) < 1e-4
    for update, share0, share1 in zip(updates, *([r for r in log if "probe_histograms" in r] for log in ranks)):
        total = torch.tensor(share0["probe_histograms"]) + torch.tensor(share1["probe_histograms"])
        assert total.tolist() == update["histograms"]
    assert not any("parameter_checksum" in r for log in ranks for r in log)  # sharded: not comparable, skipped


    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(killed / "final")
    name = "lm_head.weight"  # trained (the experts are saved unfused, under other names than in memory)
    assert torch.equal(loaded.state_dict()[name], model[name])


# Rank 1 holds a slightly different value and parameter: every rank must stop, naming what differs.
DISAGREE = """
import sys
sys.path.insert(0, {repo!r})
import torch
from lifecycle import distributed
from accelerate import Accelerator
from pathlib import Path

accelerator = Accelerator(cpu=True)
rank = accelerator.process_index
assert accelerator.num_processes == 2
distributed.assert_same_on_all_ranks(accelerator, "equal values", torch.tensor([0.25, 0.5], dtype=torch.float64), ["a", "b"])
try:
    distributed.assert_same_on_all_ranks(accelerator, "the weights", torch.tensor([0.25, 0.5 + rank * 1e-15], dtype=torch.float64), ["a", "b"])
except RuntimeError as error:
    print(f"rank {{rank}} caught: {{error}}")
layer = torch.nn.Linear(2, 2)
with torch.no_grad():
    layer.weight.fill_(1.0)
    layer.bias.fill_(0.0)
    layer.bias[0] += rank * 1e-6
try:
    distributed.DebugChecks(accelerator, Path({out!r}), enabled=True).parameters(layer, 5)
except RuntimeError as error:
    print(f"rank {{rank}} caught: {{error}}")
accelerator.end_training()
"""


def test_debug_checks_catch_ranks_that_disagree(tmp_path):
    script = tmp_path / "disagree.py"
    script.write_text(DISAGREE.format(repo=str(REPO), out=str(tmp_path / "run")))
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()), str(script)]
    result = subprocess.run(command, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    for rank in (0, 1):
        assert f"rank {rank} caught: --debug-checks: ranks disagree on the weights (1 of 2 values; by rank) b: [0.5, 0.500000000000001]" in result.stdout
        assert f"rank {rank} caught: --debug-checks: ranks disagree on the parameters after step 5 (2 of 4 values; by rank) bias (sum): [0.0, 9.99999997" in result.stdout
    assert not list((tmp_path / "run" / "debug").glob("*.jsonl"))  # nothing is logged for a step that failed the check


@pytest.mark.skipif(torch.cuda.is_available(), reason="with GPUs the launch is a real multi-GPU run")
def test_multi_process_launch_without_accelerate_use_cpu_stops(tmp_path):
    out = tmp_path / "run"
    env = {key: value for key, value in ENV.items() if key != "ACCELERATE_USE_CPU"}
    result = run_two(out, "--probe-only", *PROBE, env=env)
    assert result.returncode != 0
    assert "launched as 2 processes, but accelerate runs each of them alone" in result.stdout + result.stderr
    assert not out.exists()


def test_accelerate_configs_parse_and_deepspeed_auto_values_come_from_the_command_line():
    from types import SimpleNamespace

    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DeepSpeedPlugin

    from lifecycle import distributed

    expected = {"single_process": "NO", "ddp": "MULTI_GPU", "ddp_cpu": "MULTI_GPU", "fsdp2": "FSDP",
                "deepspeed_zero1": "DEEPSPEED", "deepspeed_zero2": "DEEPSPEED", "deepspeed_zero3": "DEEPSPEED",
                "deepspeed_zero3_offload": "DEEPSPEED"}
    assert sorted(p.stem for p in (REPO / "configs").glob("*.yaml")) == sorted(expected)
    for name, distributed_type in expected.items():
        config = load_config_from_file(str(REPO / "configs" / f"{name}.yaml"))
        assert config.distributed_type.value == distributed_type and config.mixed_precision == "no"
    assert load_config_from_file(str(REPO / "configs" / "fsdp2.yaml")).fsdp_config["fsdp_version"] == 2

    for name, stage in (("zero1", 1), ("zero2", 2), ("zero3", 3), ("zero3_offload", 3)):
        yaml = load_config_from_file(str(REPO / "configs" / f"deepspeed_{name}.yaml"))
        assert yaml.deepspeed_config["deepspeed_config_file"] == f"configs/deepspeed/{name}.json"
        plugin = DeepSpeedPlugin(hf_ds_config=str(REPO / "configs" / "deepspeed" / f"{name}.json"))
        distributed.fill_deepspeed_auto_values(SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=plugin)), 4, 0.5)
        plugin.set_mixed_precision("bf16")  # what accelerate does with --bf16
        config = plugin.deepspeed_config
        assert (config["train_micro_batch_size_per_gpu"], config["gradient_clipping"]) == (4, 0.5)
        assert config["bf16"]["enabled"] is True and config["zero_optimization"]["stage"] == plugin.zero_stage == stage
        assert "optimizer" not in config and "scheduler" not in config  # train.py's AdamW and LR schedule are used
        if stage == 3:  # the final export gathers the full weights
            assert config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
        assert (plugin.offload_param_device == "cpu") == (name == "zero3_offload")
    distributed.fill_deepspeed_auto_values(SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=None)), 4, 0.5)  # no DeepSpeed: no-op


# One optimizer step's forward and backward on 2 ranks, each with its own 4 of the same 8 packed rows (rows that
# hold different numbers of assistant tokens): after DDP's all-reduce every rank must hold the gradient of the
# whole batch, exactly what 1 process computes on all 8 rows, and so clips at the same norm.
GRADIENTS = """
import sys
sys.path.insert(0, {repo!r})
import torch
from accelerate import Accelerator
import routing, train
from models import TargetHead, load_model
from test_train import packed_batch

accelerator = Accelerator(cpu=True)
rank, world = accelerator.process_index, accelerator.num_processes
model, tokenizer = load_model("tiny", seed=0)
routing.freeze_routers(model, routing.find_routers(model))
head = TargetHead(model)
model = accelerator.prepare(model)
batch = packed_batch(tokenizer)
rows = 8 // world
mine = {{key: value[rank * rows : (rank + 1) * rows] for key, value in batch.items()}}
loss_sum, tokens = train.forward_backward(model, head, [mine], accelerator)
norm = accelerator.clip_grad_norm_(model.parameters(), 1e9)
if accelerator.is_main_process:
    grads = {{name: p.grad for name, p in accelerator.unwrap_model(model).named_parameters() if p.grad is not None}}
    torch.save({{"grads": grads, "norm": float(norm), "tokens": tokens}}, {out!r} + f"_{{world}}.pt")
accelerator.end_training()
"""


def test_two_processes_give_the_gradients_of_one(tmp_path):
    script = tmp_path / "gradients.py"
    script.write_text(GRADIENTS.format(repo=str(REPO), out=str(tmp_path / "grads")))
    env = {**ENV, "PYTHONPATH": str(REPO / "tests")}
    for world in (1, 2):
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(world), "--master_port",
                   str(free_port()), str(script)]
        result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
        assert result.returncode == 0, result.stderr[-3000:]
    one, two = (torch.load(tmp_path / f"grads_{world}.pt", weights_only=True) for world in (1, 2))
    assert one["tokens"] == two["tokens"] > 0
    assert one["grads"].keys() == two["grads"].keys() and len(one["grads"]) > 10
    worst = max(((one["grads"][k] - two["grads"][k]).abs().max() / one["grads"][k].abs().max()).item() for k in one["grads"])
    assert worst <= 1e-5
    assert two["norm"] == pytest.approx(one["norm"], rel=1e-5)
