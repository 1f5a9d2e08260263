"""experiments.compare: the statistics of the table, and a real (tiny) comparison that resumes by skipping."""

import json
import math

import pytest

from experiments import compare
from test_bad_input import small_data


def test_mean_ci_is_student_t():
    # [1, 2, 3]: mean 2, sd 1, t(0.975, 2 df) = 4.303 -> half-width 4.303 / sqrt(3) = 2.4843
    mean, ci = compare.mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and ci == pytest.approx(4.303 / math.sqrt(3), abs=1e-12)
    # five seeds: 4 df, t = 2.776; sd of [1, 1, 1, 1, 2] = sqrt(0.2) -> 2.776 * sqrt(0.2) / sqrt(5) = 0.5552
    assert compare.mean_ci([1.0, 1.0, 1.0, 1.0, 2.0]) == (pytest.approx(1.2), pytest.approx(0.5552, abs=1e-12))
    assert compare.mean_ci([3.5]) == (3.5, None)


def fake_run(out, strategy, seed, losses, tokens, weights, accuracy=None):
    folder = compare.run_folder(out, strategy, seed)
    (folder / "final" / "eval").mkdir(parents=True)
    (folder / "final" / "model.safetensors").write_bytes(b"")
    metrics = {f"{n}/loss": v for n, v in losses.items()} | {f"{n}/tokens": tokens[n] for n in losses}
    (folder / "final" / "eval" / "dev_loss.json").write_text(json.dumps({"metrics": metrics}))
    (folder / "final" / "mixture_weights.json").write_text(json.dumps(weights))
    (folder / "mixture.jsonl").write_text(json.dumps({"epochs_drawn": [0.5, 2.5]}) + "\n")
    (folder / "compare.json").write_text(json.dumps({"train_seconds": 60.0, "load_before": 1.0, "load_after": 2.0}))
    if accuracy is not None:  # as eval.accuracy writes it
        metrics = {f"{n}/accuracy": v for n, v in accuracy.items()} | {"accuracy": sum(accuracy.values()) / len(accuracy)}
        (folder / "final" / "eval" / "accuracy.json").write_text(json.dumps({"metrics": metrics}))


def test_summary_means_token_weighting_and_paired_difference(tmp_path):
    tokens = {"a": 100, "b": 300}
    for seed, (ua, ub, da, db) in enumerate([(1.0, 2.0, 0.9, 2.0), (1.2, 2.2, 1.0, 2.1), (1.1, 2.0, 1.1, 1.8)]):
        fake_run(tmp_path, "uniform", seed, {"a": ua, "b": ub}, tokens, {"a": 0.5, "b": 0.5})
        fake_run(tmp_path, "dynamic", seed, {"a": da, "b": db}, tokens, {"a": 0.2 + 0.1 * seed, "b": 0.8 - 0.1 * seed})
    args = compare.Args(out=tmp_path, seeds=(0, 1, 2), strategies=("uniform", "dynamic"), data=tmp_path)
    summary = compare.write_summary(args)
    uniform, dynamic = summary["uniform"], summary["dynamic"]
    assert uniform["loss"]["a"][0] == pytest.approx(1.1) and dynamic["loss"]["b"][0] == pytest.approx(5.9 / 3)
    # mean over datasets per seed: 1.5, 1.7, 1.55 -> 1.5833; token-weighted per seed: (1 + 6) / 4 = 1.75, ...
    assert uniform["mean"][0] == pytest.approx((1.5 + 1.7 + 1.55) / 3)
    assert uniform["token_weighted"][0] == pytest.approx((1.75 + (1.2 + 6.6) / 4 + (1.1 + 6.0) / 4) / 3)
    # paired: dynamic - uniform per seed = -0.05, -0.15, -0.1 -> mean -0.1, sd 0.05, t(2) = 4.303
    assert dynamic["vs_uniform"][0] == pytest.approx(-0.1)
    assert dynamic["vs_uniform"][1] == pytest.approx(4.303 * 0.05 / math.sqrt(3))
    assert dynamic["wins_vs_uniform"] == 3 and "vs_uniform" not in uniform
    assert dynamic["weights"] == pytest.approx({"a": 0.3, "b": 0.7}) and dynamic["max_epochs_drawn"] == 2.5
    table = (tmp_path / "summary.md").read_text()
    assert "| dynamic | 3 | 1.000 ± 0.248 |" in table and "-0.100 ± 0.124 | 3/3 |" in table
    assert (tmp_path / "summary.png").stat().st_size > 1000
    assert json.loads((tmp_path / "summary.json").read_text())["runs"]["uniform"]["0"]["mean"] == pytest.approx(1.5)


def test_summary_accuracy_and_token_weighted_paired_differences(tmp_path):
    tokens = {"a": 100, "b": 300}
    uniform = [((1.0, 2.0), (0.5, 0.3)), ((1.2, 2.2), (0.6, 0.4)), ((1.1, 2.0), (0.4, 0.2))]
    dynamic = [((0.9, 2.0), (0.6, 0.4)), ((1.0, 2.1), (0.5, 0.5)), ((1.1, 1.8), (0.7, 0.3))]
    for seed, ((ua, ub), (um, ur)), ((da, db), (dm, dr)) in zip(range(3), uniform, dynamic):
        fake_run(tmp_path, "uniform", seed, {"a": ua, "b": ub}, tokens, {"a": 0.5, "b": 0.5}, {"math": um, "reasoning": ur})
        fake_run(tmp_path, "dynamic", seed, {"a": da, "b": db}, tokens, {"a": 0.5, "b": 0.5}, {"math": dm, "reasoning": dr})
    args = compare.Args(out=tmp_path, seeds=(0, 1, 2), strategies=("uniform", "dynamic"), data=tmp_path)
    summary = compare.write_summary(args)
    # accuracy per seed: uniform 0.4, 0.5, 0.3; dynamic 0.5, 0.5, 0.5 -> paired 0.1, 0.0, 0.2: mean 0.1, sd 0.1, t(2) 4.303
    assert summary["uniform"]["accuracy_mean"][0] == pytest.approx(0.4)
    assert summary["uniform"]["accuracy"]["math"] == (pytest.approx(0.5), pytest.approx(4.303 * 0.1 / math.sqrt(3)))
    assert summary["dynamic"]["vs_uniform_accuracy"] == (pytest.approx(0.1), pytest.approx(4.303 * 0.1 / math.sqrt(3)))
    assert summary["dynamic"]["accuracy_wins_vs_uniform"] == 2
    # token-weighted per seed: uniform 1.75, 1.95, 1.775; dynamic 1.725, 1.825, 1.625 -> paired -0.025, -0.125, -0.15:
    # mean -0.1, sd sqrt(0.004375) = 0.0661438
    assert summary["dynamic"]["vs_uniform_token_weighted"] == (
        pytest.approx(-0.1), pytest.approx(4.303 * math.sqrt(0.004375) / math.sqrt(3)))
    table = (tmp_path / "summary.md").read_text()
    # mean dev loss per seed: uniform 1.5, 1.7, 1.55; dynamic 1.45, 1.55, 1.45: lower in all 3
    assert "| 3/3 | -0.100 ± 0.164 |" in table  # wins on the mean dev loss, then the token-weighted paired difference
    assert "| dynamic | 3 | 0.600 ± 0.248 | 0.400 ± 0.248 | 0.500 ± 0.000 | 0.100 ± 0.248 | 2/3 |" in table


def test_a_tiny_comparison_runs_evaluates_and_skips_what_is_done(tmp_path, monkeypatch):
    folder = small_data(tmp_path / "data")
    (folder / "eval").mkdir()  # two held-out math problems, filed under dataset `a`
    lines = (compare.REPO / "data" / "demo" / "eval" / "math.jsonl").read_text().splitlines()[:2]
    (folder / "eval" / "a.jsonl").write_text("\n".join(lines) + "\n")
    flags = ("--max-steps", "2", "--probe-every", "1", "--probe-batches", "1", "--micro-batch-size", "2",
             "--seq-len", "128", "--save-every", "2")
    args = compare.Args(data=folder, out=tmp_path / "cmp", seeds=(0,), strategies=("uniform", "refloss"),
                        train_flags=flags, threads=2)
    compare.main(args)
    reference = json.loads((tmp_path / "cmp" / "refloss" / "seed_0" / "ref_loss.json").read_text())
    last = json.loads((tmp_path / "cmp" / "uniform" / "seed_0" / "mixture.jsonl").read_text().splitlines()[-1])
    assert reference == dict(zip(last["names"], last["dev_loss"]))  # the uniform run's last probe is the reference
    summary = json.loads((tmp_path / "cmp" / "summary.json").read_text())["summary"]
    assert set(summary) == {"uniform", "refloss"} and summary["refloss"]["seeds"] == [0]
    scored = json.loads((tmp_path / "cmp" / "refloss" / "seed_0" / "final" / "eval" / "accuracy.json").read_text())
    assert scored["metrics"]["a/examples"] == 2 and summary["refloss"]["accuracy"]["a"][0] == scored["metrics"]["accuracy"]
    assert "vs_uniform_accuracy" in summary["refloss"] and "accuracy" in (tmp_path / "cmp" / "summary.md").read_text()
    record = json.loads((tmp_path / "cmp" / "uniform" / "seed_0" / "compare.json").read_text())
    assert record["train_seconds"] > 0 and "--mix" in record["command"]
    calls = []
    monkeypatch.setattr(compare, "train", lambda *a: calls.append(a))
    monkeypatch.setattr(compare, "evaluate", lambda *a: calls.append(a))
    compare.main(args)  # everything is done: nothing runs again
    assert calls == []
