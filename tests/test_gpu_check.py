"""The GPU check's CPU dry run: every section of `benchmarks/gpu_check.py` produces its numbers.

The numbers of a dry run mean nothing (a tiny model on one CPU thread); the point is that the script a GPU
session runs, with minutes of device time, has run here first. Correctness must pass here too (the same
checks as on the GPU: packed = separate with a negative control, TargetHead, probe histograms).
"""

import json
import os
import subprocess
import sys

from launch import REPO


def test_dry_run_produces_every_section(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--dry-run", "--out", str(tmp_path)],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert (tmp_path / "gpu_check.md").read_text().strip() == report["table"]
    assert result.stdout.rstrip().endswith(report["table"])  # the table is printed last
    assert report["environment"]["torch"] and report["environment"]["transformers"].split(".")[0] >= "5"

    correctness = report["correctness"]
    assert correctness["ok"] and correctness["kernels"] == ["eager", "sdpa", "sdpa_varlen"]
    for group in ("packed_vs_separate", "gpt_oss_packed_vs_separate"):
        assert correctness[group]
        for r in correctness[group].values():
            assert r["relative_error"] <= 2e-2 < r["control_relative_error"]
    assert correctness["target_head"]["relative_error"] <= 1e-2
    for precision in ("fp32", "bf16"):
        probe = correctness["probe_histograms"][precision]
        assert probe["counted_pairs"] > 0 and probe["control_differing_share"] > 0.01  # the control moves routing
    assert all(correctness["probe_histograms"]["fp32"]["identical"].values())

    speed = report["speed"]
    runs = {(r["loop"], r["kernel"], r["gradient_checkpointing"]): r for r in speed["runs"]}
    assert set(runs) == {("routemix", "sdpa", False), ("routemix", "sdpa_varlen", False), ("ceiling", "sdpa", False),
                         ("routemix", "sdpa", True), ("ceiling", "sdpa", True)}
    for run in runs.values():
        assert run["tokens_per_s"] > 0 and run["model_tflops_per_s"] > 0 and run["seconds_per_step"] > 0, run
    assert 0 < speed["probe"]["share_at_paper_schedule"] < 1 and speed["probe"]["batches"] == 20
    assert report["matmul_tflops"] > 0


def test_model_flops_by_hand():
    from types import SimpleNamespace

    from reading import data
    from benchmarks.gpu_check import example_lengths, model_flops

    config = SimpleNamespace(hidden_size=4, num_attention_heads=2, num_key_value_heads=1, head_dim=2, num_experts=4,
                             num_experts_per_tok=2, moe_intermediate_size=3, vocab_size=10, num_hidden_layers=1)
    # per token: q, k, v, o projections 2*4*(2*2*2 + 2*1*2) = 96, router 2*4*4 = 32, two SwiGLU experts 2*3*2*4*3 = 144;
    # 5 tokens: 1360; attention pairs 3 + 6 = 9, each QK and PV over 2 heads of 2: 9*2*2*2*2 = 144; LM head at
    # 4 targets 2*4*10*4 = 320; forward 1824, training 3x
    assert model_flops(config, [2, 3], targets=4) == 3 * 1824
    batch = data.collate_packed([[data.Example([5, 6], [5, 6]), data.Example([7, 8, 9], [7, 8, 9])], [data.Example([4] * 6, [4] * 6)]],
                                seq_len=7, pad_id=0)
    assert example_lengths(batch) == [2, 3, 6]  # the padding blocks (2 and 1 tokens) are not examples
