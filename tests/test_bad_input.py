"""Bad input stops a run with a message that names the file, line, dataset or setting, and corrupts nothing.

Covered elsewhere: record formats, skipped records and train/dev name mismatch (test_sources.py),
`--init-weights` / `--ref-loss` JSON validation (test_mixture.py), routers that return no indices
(test_capture.py).
"""

import json
import shutil
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState, GradientState
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaForCausalLM

from lifecycle import checkpoint
from reading import data
from reading import sources
import train
from launch import REPO, TINY_RUN, run_train
from models import TINY_DIR

DEMO = REPO / "data" / "demo"


def small_data(root: Path, names=("a", "b", "c"), per_dataset: int = 20) -> Path:
    """A data folder made of the first records of the demo datasets."""
    demo = sorted((DEMO / "train").iterdir())
    for name, source in zip(names, demo):
        lines = (source / "part-000.jsonl").read_text().splitlines()
        (root / "train" / name).mkdir(parents=True)
        (root / "train" / name / "part.jsonl").write_text("\n".join(lines[:per_dataset]) + "\n")
        (root / "dev").mkdir(exist_ok=True)
        (root / "dev" / f"{name}.jsonl").write_text("\n".join(lines[per_dataset : per_dataset + 4]) + "\n")
    return root


def run_main(tmp_path: Path, *flags: str) -> Path:
    """train.main in this process (much faster than a subprocess), as tyro would call it."""
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    import tyro

    args = tyro.cli(train.Args, args=[*TINY_RUN, *flags])
    train.main(args)
    return args.out


def test_malformed_line_from_the_command_line_names_file_and_line(tmp_path):
    folder = small_data(tmp_path / "data")
    bad = folder / "train" / "b" / "part.jsonl"
    bad.write_text(bad.read_text() + '{"instruction": "unterminated\n')
    result = run_train(tmp_path / "run", "--data", str(folder), "--max-steps", "2")
    assert result.returncode == 1
    assert f"routemix: error: {bad}:21: malformed JSON" in result.stderr
    assert 'train.py", line' not in result.stderr  # no traceback from routemix (accelerate's launcher prints its own)


def test_empty_dataset_is_named(tmp_path):
    folder = small_data(tmp_path / "data")
    (folder / "train" / "c" / "part.jsonl").write_text("\n")
    with pytest.raises(sources.DataError, match=r"dataset 'c' in .*train has no usable records"):
        run_main(tmp_path, "--data", str(folder), "--out", str(tmp_path / "run"))


def test_model_without_routers_fails_at_start(tmp_path):
    """A dense Llama with the tiny tokenizer. Only the tokenizer's files are copied: models/tiny is a whole model
    (config.json, weights), which would replace the Llama's."""
    dense = tmp_path / "dense"
    tokenizer_files = ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja"]
    vocab_size = len(json.loads((TINY_DIR / "tokenizer.json").read_text())["model"]["vocab"])
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2)
    LlamaForCausalLM(config).save_pretrained(dense)
    for name in tokenizer_files:
        shutil.copy(TINY_DIR / name, dense)
    assert json.loads((dense / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    with pytest.raises(ValueError, match=r"LlamaForCausalLM has no recognisable MoE routers.*--router-pattern"):
        run_main(tmp_path, "--model", str(dense), "--data", str(small_data(tmp_path / "data")), "--out", str(tmp_path / "run"))


def test_nonfinite_loss_stops_without_corrupting_checkpoints(tmp_path, capsys):
    folder = small_data(tmp_path / "data")
    # lr 1e30 makes the first update finite but huge; the next forward overflows to inf/NaN.
    flags = ["--data", str(folder), "--lr", "1e30", "--warmup-ratio", "0", "--max-steps", "6", "--save-every", "1"]
    with pytest.raises(SystemExit, match=r"non-finite loss or gradient at step 2 .*datasets in the step: \['a', 'b', 'c'\]"):
        run_main(tmp_path, *flags, "--out", str(tmp_path / "stop"))
    checkpoints = checkpoint.complete_checkpoints(tmp_path / "stop")
    assert [p.name for p in checkpoints] == ["step_1"]
    assert all(torch.isfinite(t).all() for t in load_file(checkpoints[0] / "model.safetensors").values())
    assert not (tmp_path / "stop" / "final").exists()

    with pytest.raises(SystemExit, match=r"Non-finite steps so far: 3 \(allowed by --skip-nonfinite: 2\)"):
        run_main(tmp_path, *flags, "--skip-nonfinite", "2", "--out", str(tmp_path / "skip"))
    assert capsys.readouterr().out.count("warning: skipped non-finite step 2") == 2


def test_resume_refuses_a_changed_run_and_resume_none_refuses_a_used_folder(tmp_path):
    folder = small_data(tmp_path / "data")
    out = run_main(tmp_path, "--data", str(folder), "--max-steps", "2", "--out", str(tmp_path / "run"))
    with pytest.raises(SystemExit, match=r"settings that change what is trained differ: --seq-len was 128, now 64\."):
        run_main(tmp_path, "--data", str(folder), "--max-steps", "4", "--out", str(out), "--seq-len", "64")
    (folder / "train" / "d").mkdir()
    shutil.copy(folder / "train" / "a" / "part.jsonl", folder / "train" / "d" / "part.jsonl")
    shutil.copy(folder / "dev" / "a.jsonl", folder / "dev" / "d.jsonl")
    with pytest.raises(SystemExit, match=r"datasets was \{'a': 20, 'b': 20, 'c': 20\}, now \{'a': 20, 'b': 20, 'c': 20, 'd': 20\}"):
        run_main(tmp_path, "--data", str(folder), "--max-steps", "4", "--out", str(out))
    with pytest.raises(SystemExit, match=r"already holds a run"):
        run_main(tmp_path, "--data", str(folder), "--out", str(out), "--resume", "none")


def test_long_examples_are_truncated_and_counted_and_small_dev_sets_warn(tmp_path, capsys):
    folder = small_data(tmp_path / "data")
    train_set, dev_set = sources.load_train_dev(folder)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(TINY_DIR)
    draws = iter([("a", i) for i in range(20)])
    stream = data.PackedStream(lambda: next(draws), train_set, tokenizer, seq_len=64, rows=2)
    stream.next_batch()
    lengths = [len(data.encode(tokenizer, m, 10_000).input_ids) for m in train_set["a"][:20]]
    drawn = 20 - sum(1 for _ in draws)  # every drawn example is encoded (the pending one too)
    assert stream.truncated["a"] == sum(n > 64 for n in lengths[:drawn]) > 0

    args = train.resolve_defaults(train.Args(probe_batches=5, micro_batch_size=4, seq_len=128))
    batches = train.make_probe_batches(dev_set, tokenizer, args)
    assert all(len(b) == 1 for b in batches.values())  # 4 dev records fill one batch: used as they are
    assert "warning: dev set 'a' fills 1 of 5 probe batches" in capsys.readouterr().out
