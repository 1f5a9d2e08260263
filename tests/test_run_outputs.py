"""What a run leaves for users, from one short run: TensorBoard through accelerate's trackers, checkpoints that
load as models (eval.dev_loss, from_pretrained), the model card, `--push-to-hub` (HfApi stopped short of the
network), and `eval.chat` driven through its standard input."""

import io
import json
import math
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from transformers import AutoModelForCausalLM

import eval.chat
import eval.dev_loss
from eval.generation import chat_prompt, load_checkpoint
from launch import ENV, REPO, TINY_RUN

RUN = [*TINY_RUN, "--max-steps", "6", "--probe-every", "3", "--save-every", "3", "--push-to-hub", "me/tiny-routemix"]

# train.py in-process with huggingface_hub's HfApi recording its calls instead of reaching the hub
PUSH_RECORDED = """
import json, os, sys, tyro, huggingface_hub
from pathlib import Path
sys.argv[0] = "train.py"
calls = []
def create_repo(self, repo_id, **kwargs):
    calls.append({"call": "create_repo", "repo_id": repo_id, **kwargs})
def upload_folder(self, *, folder_path, **kwargs):
    files = sorted(str(p.relative_to(folder_path)) for p in Path(folder_path).rglob("*") if p.is_file())
    calls.append({"call": "upload_folder", "folder_path": str(folder_path), "files": files, **kwargs})
    return "https://huggingface.co/me/tiny-routemix/commit/0"
huggingface_hub.HfApi.create_repo, huggingface_hub.HfApi.upload_folder = create_repo, upload_folder
import train
train.main(tyro.cli(train.Args))
Path(os.environ["HUB_CALLS"]).write_text(json.dumps(calls))
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("outputs") / "run"
    calls = out.parent / "hub_calls.json"
    result = subprocess.run([sys.executable, "-c", PUSH_RECORDED, "--out", str(out), *RUN], cwd=REPO,
                            env={**ENV, "HUB_CALLS": str(calls)}, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, json.loads(calls.read_text()), result.stdout


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_tensorboard_gets_the_scalars_and_the_heatmap_through_accelerate(run):
    out, _, _ = run
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("losses/train")] == [1, 2, 3, 4, 5, 6]
    metrics = read_jsonl(out / "metrics.jsonl")
    assert [e.value for e in events.Scalars("losses/train")] == pytest.approx([m["loss"] for m in metrics], rel=1e-6)
    updates = read_jsonl(out / "mixture.jsonl")
    for i, name in enumerate(updates[0]["names"]):
        logged = [(e.step, e.value) for e in events.Scalars(f"mixture/weight_{name}")]
        assert logged == [(u["step"], pytest.approx(u["weights_after"][i], rel=1e-6)) for u in updates]
        assert [e.step for e in events.Scalars(f"losses/dev_{name}")] == [3, 6]
    assert [e.step for e in events.Images("mixture/routing")] == [3, 6]  # drawn at each checkpoint


def test_every_checkpoint_is_a_model_for_eval_and_from_pretrained(run, tmp_path):
    out, _, _ = run
    step_3, step_6, final = out / "checkpoints" / "step_3", out / "checkpoints" / "step_6", out / "final"
    results = eval.dev_loss.main(eval.dev_loss.Args(checkpoints=(step_3, step_6, final), data=REPO / "data" / "demo",
                                                    limit=4, out=tmp_path / "dev_loss"))
    assert [r.run for r in results] == ["run-step_3", "run-step_6", "run"]
    assert results[1].metrics == results[2].metrics  # the last checkpoint is the final model
    assert results[0].metrics["loss"] > results[1].metrics["loss"]  # three more steps of training
    # from_pretrained-style: the checkpoint's weights under the model's own names, with its config and tokenizer
    ids = torch.randint(0, 2000, (1, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = AutoModelForCausalLM.from_pretrained(step_6).eval()(input_ids=ids).logits
        b = AutoModelForCausalLM.from_pretrained(final).eval()(input_ids=ids).logits
    assert torch.equal(a, b)
    # a folder that is not a model (here: a checkpoint without its config) is refused, not randomly initialised
    bare = tmp_path / "bare"
    shutil.copytree(step_3, bare)
    (bare / "config.json").unlink()
    with pytest.raises(ValueError, match="holds no config.json or adapter_config.json"):
        load_checkpoint(bare)
    # ... and so are weights under other names (DDP's `module.` prefix, as accelerate alone would save them)
    shutil.copyfile(step_3 / "config.json", bare / "config.json")
    weights = load_file(bare / "model.safetensors")
    save_file({f"module.{k}": v for k, v in weights.items()}, bare / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"weights of the model are not in the checkpoint \(lm_head.weight"):
        load_checkpoint(bare)


def test_model_card_and_push_to_hub(run):
    out, calls, stdout = run
    card = (out / "final" / "README.md").read_text()
    updates = read_jsonl(out / "mixture.jsonl")
    last = updates[-1]
    assert card.startswith("---\nlibrary_name: transformers\n") and "tags: [routemix" in card
    assert "| code | 1,200 | 80 | " in card  # train and dev records of the demo data
    for i, name in enumerate(last["names"]):
        assert f"| {name} | {last['dev_loss'][i]:.4f} | {math.exp(last['dev_loss'][i]):.2f} |" in card
    # the trajectory: initial weights from step 0, then each update's
    assert "| 0 | 0.2500 | 0.2500 | 0.2500 | 0.2500 |" in card
    assert "| 6 | " + " | ".join(f"{w:.4f}" for w in last["weights_after"]) + " |" in card
    assert "![weights over steps](weights.png)" in card and (out / "final" / "weights.png").read_bytes() == (
        out / "plots" / "weights.png").read_bytes()
    assert "| `--mix` | `dynamic` |" in card and "| `--max-steps` | `6` |" in card and "lora" not in card
    assert 'from_pretrained("me/tiny-routemix")' in card
    # --push-to-hub: the repo is created and final/ uploaded, card and all
    assert [c["call"] for c in calls] == ["create_repo", "upload_folder"]
    assert calls[0]["repo_id"] == "me/tiny-routemix" and calls[0]["exist_ok"]
    upload = calls[1]
    assert upload["repo_id"] == "me/tiny-routemix" and upload["folder_path"] == str(out / "final")
    assert {"README.md", "weights.png", "model.safetensors", "config.json", "tokenizer.json", "mixture_weights.json",
            "chat_template.jinja"} <= set(upload["files"])
    assert "pushed " in stdout


def test_push_failure_says_where_the_model_is(tmp_path):
    from outputs import model_card

    class Offline:
        def create_repo(self, repo_id, **kwargs):
            raise ConnectionError("no network")

    with pytest.raises(SystemExit, match=r"--push-to-hub me/x: the upload failed \(ConnectionError: no network\); the model is in"):
        model_card.push(tmp_path, "me/x", api=Offline())


def test_chat_through_standard_input(run):
    final = run[0] / "final"
    turns = "Hello\nWhat is 2 + 2?\n/reset\nHello\n/exit\n"
    result = subprocess.run([sys.executable, "-m", "eval.chat", str(final), "--max-new-tokens", "6"], input=turns,
                            cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(conversation reset)" in result.stdout
    replies = [part.split("\nyou> ")[0] for part in result.stdout.split("model> ")[1:]]
    assert len(replies) == 3 and replies[0] == replies[2]  # greedy: the same first turn after /reset

    # the same in-process: each turn is rendered from the whole conversation; /reset forgets it
    args = eval.chat.Args(checkpoint=final, max_new_tokens=6)
    chat = eval.chat.main(args, io.StringIO("Hello\nWhat is 2 + 2?\n"))
    roles = [m["role"] for m in chat.messages]
    assert roles == ["user", "assistant", "user", "assistant"] and chat.messages[0]["content"] == "Hello"
    assert chat.messages[1]["content"] in chat_prompt(chat.tokenizer, chat.messages[:3])
    assert eval.chat.main(args, io.StringIO("Hello\n/reset\n")).messages == []


def test_the_default_command_without_out_runs_into_a_new_folder(tmp_path):
    """`accelerate launch train.py` as the README says, with no --out: the run folder is made under ./runs/<time>
    (where it is claimed, after the trackers were set up), and TensorBoard writes inside it."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", str(REPO / "train.py"),
               "--data", str(REPO / "data" / "demo"), *TINY_RUN, "--max-steps", "2", "--probe-every", "2"]
    done = subprocess.run(command, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (out,) = (tmp_path / "runs").iterdir()
    assert (out / "final" / "model.safetensors").exists() and (out / "checkpoints" / "step_2" / "COMPLETE").exists()
    events = EventAccumulator(str(out / "tensorboard")).Reload()
    assert [e.step for e in events.Scalars("losses/train")] == [1, 2]
