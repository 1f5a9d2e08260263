"""Many processes, one data order (issue 25), launched the way users launch them (DDP over gloo on CPU):

- on 2 and on 3 processes, the examples all ranks drew together hold each example once per pass, in the order of
  the run's one sequence (with a negative control: ranks that all draw the same order fail the check);
- a run stopped on 2 processes and resumed on 1 and on 3 continues that order (no example skipped or repeated
  within a pass), its weights and mixture.jsonl, its LR schedule and its optimizer; the final model loads;
- the probe gives the same histograms on 1 and on 3 processes (on 2: tests/test_distributed.py);
- in-process: how a checkpoint's per-rank state is resharded, the fingerprint's note, the benchmark runs.

Resume on the same number of processes stays bitwise: tests/test_distributed.py and tests/test_resume.py.
The expected values are computed by hand in `problems_with_passes` (tests/test_sampler.py): each dataset's
draws, in the sequence's order, cut into passes of its size, hold every example once per pass.
"""

import json
import shutil
import subprocess
import sys

import pytest
import torch

from launch import REPO
from test_distributed import ENV, PROBE, free_port, read_jsonl
from test_sampler import in_sequence_order, problems_with_passes

DEMO = REPO / "data" / "demo"
SIZES = {"code": 3, "explain": 4, "math": 5}  # small, so that a few steps cross several passes of each
# --delta-noise 0: the weights must move at every update for the continuation to show (a few dev examples are within
# the default's noise band, which would keep them at their initial values)
FLAGS = ["--micro-batch-size", "2", "--seq-len", "128", "--probe-batches", "2", "--max-steps", "8", "--probe-every", "3",
         "--save-every", "4", "--log-every", "1", "--seed", "3", "--debug-checks", "--delta-noise", "0"]


def small_data(root):
    """The demo's first few records of three datasets (SIZES), with their dev sets."""
    for name, size in SIZES.items():
        (root / "train" / name).mkdir(parents=True)
        lines = (DEMO / "train" / name / "part-000.jsonl").read_text().splitlines()[:size]
        (root / "train" / name / "part.jsonl").write_text("\n".join(lines) + "\n")
        (root / "dev").mkdir(exist_ok=True)
        shutil.copy(DEMO / "dev" / f"{name}.jsonl", root / "dev" / f"{name}.jsonl")
    return root


def launch(out, processes: int, *flags) -> subprocess.CompletedProcess:
    """`accelerate launch --config_file configs/ddp_cpu.yaml --num_processes N train.py --out OUT ...`."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", "configs/ddp_cpu.yaml",
               "--num_processes", str(processes), "--main_process_port", str(free_port()), "train.py", "--out", str(out),
               *flags]
    result = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def draws(out, ranks, steps) -> list[list]:
    """The draws `[rank, name, index, pass, place]` that ranks `ranks` logged (--debug-checks) for `steps`."""
    return [[rank, *draw] for rank in ranks for record in read_jsonl(out / "debug" / f"rank_{rank}.jsonl")
            if "drawn" in record and record["step"] in steps for draw in record["drawn"]]


@pytest.fixture(scope="module")
def data_folder(tmp_path_factory):
    return small_data(tmp_path_factory.mktemp("elastic") / "data")


@pytest.fixture(scope="module")
def two(data_folder, tmp_path_factory):
    """An uninterrupted 8-step run on 2 processes: the first-pass check's run and the run the resumes stop."""
    out = tmp_path_factory.mktemp("elastic") / "two"
    launch(out, 2, "--data", str(data_folder), *FLAGS)
    return out


@pytest.fixture(scope="module")
def three(data_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("elastic") / "three"
    launch(out, 3, "--data", str(data_folder), *FLAGS)
    return out


@pytest.mark.parametrize("world", [2, 3])
def test_all_ranks_together_draw_each_example_once_per_pass(world, request):
    out = request.getfixturevalue({2: "two", 3: "three"}[world])
    logged = draws(out, range(world), range(1, 9))
    for rank in range(world):  # rank r takes the places r, r + world, r + 2 * world, ... of the run's sequence
        places = [d[4] for d in logged if d[0] == rank]
        assert places == [rank + k * world for k in range(len(places))]
    sequence, beyond = in_sequence_order([d[1:] for d in logged])
    assert len(sequence) >= 2 * sum(SIZES.values()) and beyond < 4 * world  # several passes; ranks end close together
    assert problems_with_passes(sequence, SIZES) == []
    # negative control: every rank drawing rank 0's order, as each rank shuffling alone with one seed would
    rank0 = [(d[1], d[2]) for d in logged if d[0] == 0]
    assert problems_with_passes([draw for draw in rank0 for _ in range(world)], SIZES) != []


def stopped_at_step_4(out, copy):
    """A copy of `out` as it was right after its step-4 checkpoint (later checkpoints and final/ removed): a run
    stopped there."""
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "final")
    shutil.rmtree(copy / "checkpoints" / "step_8")
    return copy


@pytest.mark.parametrize("processes", [1, 3])
def test_stopped_on_two_processes_resumes_on_another_number(processes, two, data_folder, tmp_path):
    out = stopped_at_step_4(two, tmp_path / "resumed")
    result = launch(out, processes, "--data", str(data_folder), *FLAGS)
    assert f"(written by 2 processes, resumed on {processes})" in result.stdout
    assert f"resume: processes was 2, now {processes} (at step 4): the run's data order continues" in result.stdout

    # the data order: steps 1-4 drawn by the 2 old ranks, steps 5-8 by the new ones; no place of the sequence drawn
    # twice, and each example once per pass
    logged = draws(out, range(2), range(1, 5)) + draws(out, range(processes), range(5, 9))
    sequence, beyond = in_sequence_order([d[1:] for d in logged])
    assert len(sequence) >= 2 * sum(SIZES.values()) and beyond < 4 * max(processes, 2)
    assert problems_with_passes(sequence, SIZES) == []
    states = [json.loads((out / "checkpoints" / "step_8" / f"routemix_state_{r}.json").read_text())
              for r in range(processes)]
    assert sum(sum(s["sampler"]["taken"].values()) for s in states) == len(logged)  # the run's draw counts continue

    # the mixture: the same first update, then each update starts from the weights the one before left
    original, resumed = read_jsonl(two / "mixture.jsonl"), read_jsonl(out / "mixture.jsonl")
    assert [u["step"] for u in resumed] == [3, 6, 8]
    assert {**resumed[0], "seconds": 0} == {**original[0], "seconds": 0}
    # (not that each update moves them: with three datasets and --agg max, the nearest pair's deltas are equal, and
    # standardised deltas of that shape are the same at every probe, so the anchored rule can land where it was)
    assert resumed[1]["weights_before"] == resumed[0]["weights_after"]
    assert resumed[2]["weights_before"] == resumed[1]["weights_after"]
    assert [at for at, _ in states[0]["sampler"]["history"]] == [0, 3, 6, 8]
    assert all(s["sampler"]["history"] == states[0]["sampler"]["history"] for s in states)
    # the LR schedule and the optimizer continue: the same learning rates, Adam's step count at 8
    metrics = read_jsonl(out / "metrics.jsonl")
    assert [m["step"] for m in metrics] == list(range(1, 9))
    assert [m["lr"] for m in metrics] == [m["lr"] for m in read_jsonl(two / "metrics.jsonl")]
    optimizer = torch.load(out / "checkpoints" / "step_8" / "optimizer.bin", weights_only=True)
    assert {float(state["step"]) for state in optimizer["state"].values()} == {8.0}

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out / "final").eval()
    with torch.no_grad():
        assert torch.isfinite(model(input_ids=torch.arange(12).reshape(1, 12)).logits).all()


def test_probe_on_three_processes_equals_one_process(tmp_path):
    one, three = tmp_path / "one", tmp_path / "three"
    launch(one, 1, "--probe-only", *PROBE)
    launch(three, 3, "--probe-only", *PROBE)  # 3 probe batches: one on each rank
    [expected], [got] = read_jsonl(one / "mixture.jsonl"), read_jsonl(three / "mixture.jsonl")
    assert got["histograms"] == expected["histograms"] and got["probe_tokens"] == expected["probe_tokens"]
    assert got["weights_after"] == expected["weights_after"] != got["weights_before"]
    assert got["dev_loss"] == pytest.approx(expected["dev_loss"], rel=1e-12)


def test_reshard_state_shares_out_waiting_examples_and_sums_what_ranks_count():
    """In-process: the examples the old ranks drew but had not packed yet wait on exactly one new rank each, and
    the counts summed over ranks (tokens drawn, the period's training routing) keep their sums."""
    from lifecycle.checkpoint import reshard_state
    from sampler import MixtureSampler

    sizes = {"a": 4, "b": 6}
    samplers = [MixtureSampler(sizes, {"a": 1, "b": 1}, seed=0, rank=r, world=2) for r in range(2)]
    for sampler, n in zip(samplers, (5, 3)):
        for _ in range(n):
            sampler.draw()
    waiting = [[["a", 1], ["b", 5]], [["b", 0]]]
    states = [{"step": 4, "tokens": 99, "mixture": {"weights": [0.5, 0.5]}, "sampler": s.state_dict(),
               "stream": {"pending": pending, "drawn_tokens": {"a": 10 + r, "b": 20 + r}},
               "trained_routing": {"histograms": [[[r + 1, 2]], [[3, 4]]], "tokens": [r, 2], "previous": [[[1, 1]], [[1, 1]]]}}
              for r, (s, pending) in enumerate(zip(samplers, waiting))]
    for world in (1, 3):
        new = [reshard_state(states, rank, world, None) for rank in range(world)]
        assert sorted(key for s in new for key in s["stream"]["pending"]) == [["a", 1], ["b", 0], ["b", 5]]
        assert [s["stream"]["drawn_tokens"] for s in new] == [{"a": 21, "b": 41}] + [{}] * (world - 1)
        assert new[0]["trained_routing"]["histograms"] == [[[3, 4]], [[6, 8]]] and new[0]["trained_routing"]["tokens"] == [1, 4]
        assert all(s["trained_routing"]["histograms"] is None and s["trained_routing"]["tokens"] == [0, 0] for s in new[1:])
        assert all(s["trained_routing"]["previous"] == [[[1, 1]], [[1, 1]]] for s in new)
        assert all((s["step"], s["tokens"], s["mixture"]) == (4, 99, {"weights": [0.5, 0.5]}) for s in new)
        assert sum(sum(s["sampler"]["taken"].values()) for s in new) == 8


def test_the_fingerprint_allows_another_number_of_processes_and_says_what_changes():
    from lifecycle import config

    args = config.resolve_defaults(config.Args(micro_batch_size=8))
    saved = config.run_fingerprint(args, {"a": 1, "b": 2}, [0.5, 0.5], None, processes=8)
    notes = config.changes_on_resume(saved, {**saved, "processes": 4}, 100, "refused")
    assert notes == [f"processes was 8, now 4 (at step 100): {config.PROCESSES_ON_RESUME}; the effective batch "
                     "(micro-batch-size x grad-accum x processes) was 64 rows per optimizer step, now 32"]
    assert config.changes_on_resume(saved, saved, 100, "refused") == []
    old = {key: value for key, value in saved.items() if key != "processes"}  # a checkpoint from before: not compared
    assert config.changes_on_resume(old, {**saved, "processes": 4}, 100, "refused") == []
    with pytest.raises(SystemExit, match="--grad-accum was 1, now 2"):  # accelerate's accumulation counter would slip
        config.changes_on_resume(saved, {**saved, "processes": 4, "grad_accum": 2}, 100, "refused")


def test_sampler_cost_benchmark_prints_its_row():
    """The numbers of so small a run mean nothing; only that the benchmark runs through and prints both rows."""
    result = subprocess.run([sys.executable, "benchmarks/sampler_cost.py", "--records", "2000", "--ranks", "4", "--draws",
                             "500", "--repeats", "1"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| 4 |") or line.startswith("| 1 |")]
    assert len(rows) == 2 and all(float(row.split("|")[2].split()[0]) > 0 for row in rows)
