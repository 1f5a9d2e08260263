"""Every flag is checked before the first step, and before anything loads or is written: its range (config.py, no
torch), the strategy against the datasets, the model's path and positions (its config only, no weights), and a
--seq-len that leaves a dataset without targets. Each refusal names the flag and the value."""

import subprocess
import sys

import pytest
from transformers import LlamaConfig

from lifecycle import config
from lifecycle import preflight
from launch import ENV, REPO
from test_bad_input import run_main, small_data


@pytest.mark.parametrize("flags, message", [
    # the cases of issue 14: 0 used to mean "keep everything", "the default" or a crash far from its cause
    ({"keep_checkpoints": 0}, "--keep-checkpoints 0: must be at least 1"),
    ({"seq_len": 1}, "--seq-len 1: must be at least 2 (a row needs 2 tokens for one next-token target"),
    ({"max_steps": 0}, "--max-steps 0: must be at least 1 (0 steps would export the untrained model"),
    ({"probe_every": 0}, "--probe-every 0: must be at least 1"),
    ({"seq_len": 0}, "--seq-len 0: must be at least 2"),
    ({"probe_batches": 0}, "--probe-batches 0: must be at least 1"),
    ({"grad_accum": 0}, "--grad-accum 0: must be at least 1"),
    ({"micro_batch_size": 0}, "--micro-batch-size 0: must be at least 1"),
    ({"seq_len": -5}, "--seq-len -5: must be at least 2"),
    ({"eta": -5.0}, "--eta -5.0: must be finite and > 0 (a negative step size inverts the method"),
    ({"log_every": 0}, "--log-every 0: must be at least 1"),
    ({"save_every": 0}, "--save-every 0: must be at least 1"),
    ({"c": 1.5}, "--c 1.5: must be finite and in [0, 1]"),
    ({"c": -0.1}, "--c -0.1: must be finite and in [0, 1]"),
    # and the rest of the numbers
    ({"lr": 0.0}, "--lr 0.0: must be finite and > 0"),
    ({"lr": float("nan")}, "--lr nan: must be finite and > 0"),
    ({"warmup_ratio": 1.5}, "--warmup-ratio 1.5: must be finite and in [0, 1]"),
    ({"weight_decay": -1.0}, "--weight-decay -1.0: must be finite and >= 0"),
    ({"max_grad_norm": 0.0}, "--max-grad-norm 0.0: must be finite and > 0"),
    ({"aux_loss_coef": float("inf")}, "--aux-loss-coef inf: must be finite and >= 0"),
    ({"skip_nonfinite": -1}, "--skip-nonfinite -1: must be at least 0"),
    ({"seed": -1}, "--seed -1: must be at least 0"),
    ({"seed": 2**32}, "--seed 4294967296: must be below 2**32"),
    ({"lora_r": -1}, "--lora-r -1: must be at least 0"),
    ({"lora_alpha": 0.0}, "--lora-alpha 0.0: must be finite and > 0"),
    ({"lora_dropout": 1.0}, "--lora-dropout 1.0: must be finite and in [0, 1)"),
    ({"mix": "refloss"}, "--mix refloss needs --ref-loss"),
    ({"ref_loss": "ref.json"}, "--ref-loss ref.json is used only by --mix refloss, and --mix is dynamic"),
    ({"router_pattern": "mlp.(gate"}, "--router-pattern 'mlp.(gate': not a regular expression"),
])
def test_out_of_range_flags_are_refused_naming_flag_and_value(flags, message):
    with pytest.raises(SystemExit) as refused:
        config.resolve_defaults(config.Args(**flags))
    assert str(refused.value).startswith(message)


def test_defaults_and_edge_values_pass_and_resolve_once():
    args = config.resolve_defaults(config.Args())
    assert (args.micro_batch_size, args.seq_len, args.probe_every, args.probe_batches, args.lr) == (None,) * 5  # the model's
    assert preflight.apply_model_defaults(args).startswith("defaults for --model tiny (a small model")
    assert (args.micro_batch_size, args.seq_len, args.probe_every, args.probe_batches, args.lr) == (4, 512, 25, 3, 1e-3)
    assert args.out is None  # the run folder is created, uniquely, when the run claims it (run_lock.claim)
    edge = config.Args(seq_len=2, max_steps=1, c=0.0, warmup_ratio=1.0, max_grad_norm=float("inf"), seed=2**32 - 1)
    assert config.resolve_defaults(config.resolve_defaults(edge)) == edge


def test_flag_errors_answer_from_the_command_line_before_torch_is_imported():
    result = subprocess.run([sys.executable, "-X", "importtime", "train.py", "--save-every", "0"], cwd=REPO, env=ENV, check=False,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == "--save-every 0: must be at least 1 (optimizer steps between checkpoints)"
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "tyro" in imported and "torch" not in imported and "transformers" not in imported


def test_strategy_against_the_number_of_datasets(capsys):
    with pytest.raises(SystemExit, match=r"--data d: routemix mixes 2 or more datasets and found 1 \(\['only'\]\); "
                                         r"scripts/pseudo_domains.py"):
        config.check_datasets(config.Args(data="d", mix="static"), ["only"])
    config.check_datasets(config.Args(), ["a", "b"])
    assert "warning: with 2 datasets the dynamic update cannot move the weights" in capsys.readouterr().out
    config.check_datasets(config.Args(), ["a", "b", "c"])
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("name", ["./no/such/model", "../model", "/no/such/model", "~/model", "runs/x/final/",
                                  "a/b/c"])
def test_a_local_looking_model_path_that_does_not_exist_is_no_such_folder_without_the_hub(name, monkeypatch):
    def no_hub(*args, **kwargs):
        raise AssertionError("the hub was asked")  # transformers would retry it for ~50 s offline

    monkeypatch.setattr("transformers.AutoConfig.from_pretrained", no_hub)
    with pytest.raises(ValueError, match=rf"^--model {name}: no such folder$"):
        preflight.check_model(name, 128, trust_remote_code=False)


def test_hub_ids_are_not_mistaken_for_paths_and_folders_are_checked(tmp_path):
    assert not preflight.looks_local("allenai/OLMoE-1B-7B-0924") and not preflight.looks_local("gpt2")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty: the folder has no config.json"):
        preflight.check_model(str(tmp_path / "empty"), 128, trust_remote_code=False)


def test_seq_len_beyond_the_model_positions_is_refused_from_the_config_alone(tmp_path):
    with pytest.raises(ValueError, match=r"--seq-len 100000 is longer than the 4096 positions of --model tiny "
                                         r"\(max_position_embeddings in its config\)"):
        preflight.check_model("tiny", 100_000, trust_remote_code=False)
    preflight.check_model("tiny", 4096, trust_remote_code=False)
    folder = tmp_path / "short"
    LlamaConfig(max_position_embeddings=64).save_pretrained(folder)  # a config and no weights: none are read
    with pytest.raises(ValueError, match=rf"--seq-len 128 is longer than the 64 positions of --model {folder} "):
        preflight.check_model(str(folder), 128, trust_remote_code=False)


def test_real_runs_refuse_before_writing_anything(tmp_path):
    folder = small_data(tmp_path / "data")
    out = tmp_path / "run"
    for flags, message in [
        (["--model", str(tmp_path / "typo")], f"--model {tmp_path / 'typo'}: no such folder"),
        (["--seq-len", "100000"], "--seq-len 100000 is longer than the 4096 positions"),
    ]:
        with pytest.raises(ValueError, match=message):
            run_main(tmp_path, "--data", str(folder), "--out", str(out), *flags)
        assert not out.exists()
    # prompts longer than the rows: refused at the first tokenisation, before the first step (the issue: "--seq-len 1
    # trains on 0 tokens and exits 0 with loss 0.0"; any length below the prompts does the same)
    with pytest.raises(ValueError, match=r"--seq-len 8: no dev example of dataset 'a' keeps an assistant token"):
        run_main(tmp_path, "--data", str(folder), "--out", str(out), "--seq-len", "8")
    assert not (out / "checkpoints").exists() and not (out / "metrics.jsonl").exists()


def test_defaults_for_a_model_other_than_tiny_are_the_readmes():
    """README, "Flags that matter": tiny's defaults, and those of any other model, written out."""
    import tyro

    small = {"lr": 1e-3, "micro_batch_size": 4, "seq_len": 512, "probe_every": 25, "probe_batches": 3}
    large = {"lr": 2e-5, "micro_batch_size": 8, "seq_len": 2048, "probe_every": 100, "probe_batches": 5}
    args = config.resolve_defaults(tyro.cli(config.Args, args=["--model", "tiny"]))
    preflight.apply_model_defaults(args)  # the embedded model's config: a small model
    assert {key: getattr(args, key) for key in small} == small
    # a hub MoE of a few billion parameters (its size from its config, which this test does not download)
    args = config.resolve_defaults(tyro.cli(config.Args, args=["--model", "org/some-moe"]))
    config.model_defaults(args, 7_000_000_000, None)
    assert {key: getattr(args, key) for key in large} == large
    assert (args.grad_accum, args.warmup_ratio, args.max_steps) == (1, 0.03, 300)


@pytest.mark.parametrize("engine", ["fsdp", "zero3"])
def test_lora_refuses_fsdp_and_zero3(engine):
    """README: FSDP and ZeRO-3 are not supported with LoRA; the refusal names both and what to use instead."""
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from models import lora

    accelerator = SimpleNamespace(
        distributed_type=DistributedType.FSDP if engine == "fsdp" else DistributedType.DEEPSPEED,
        state=SimpleNamespace(deepspeed_plugin=SimpleNamespace(zero_stage=3) if engine == "zero3" else None))
    with pytest.raises(ValueError, match=r"--lora-r under FSDP or DeepSpeed ZeRO-3 is not supported yet .* use DDP or "
                                         r"ZeRO-1/2"):
        lora.wrap(None, None, None, [], None, accelerator)
