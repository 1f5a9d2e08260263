"""The repetition cap end to end: a dataset 10x smaller than the others, whose routing the update favours."""

import contextlib
import io
import json

import pytest

from test_bad_input import DEMO, run_main

SMALL = 12  # records of the small dataset; the others have 10x as many


def small_one_favoured(root):
    """code, explain, reasoning (120 records each) and `digits` (12 records of digit strings). The digits route
    apart from everything else (few, distinct tokens), so the dynamic update gives them the most weight."""
    for split in ("train", "dev"):
        (root / split).mkdir(parents=True)
    for name in ("code", "explain", "reasoning"):
        lines = (DEMO / "train" / name / "part-000.jsonl").read_text().splitlines()[: 10 * SMALL]
        (root / "train" / name).mkdir()
        (root / "train" / name / "part.jsonl").write_text("\n".join(lines) + "\n")
        (root / "dev" / f"{name}.jsonl").write_text((DEMO / "dev" / f"{name}.jsonl").read_text())
    digits = [json.dumps({"instruction": "Continue the digits.", "output": " ".join(str((i * 7 + j) % 10) for j in range(60))})
              for i in range(SMALL + 40)]
    (root / "train" / "digits").mkdir()
    (root / "train" / "digits" / "part.jsonl").write_text("\n".join(digits[:SMALL]) + "\n")
    (root / "dev" / "digits.jsonl").write_text("\n".join(digits[SMALL:]) + "\n")
    return root


def drawn(out, step):
    """Examples the sampler actually drew of each dataset, from its state in the last checkpoint."""
    state = json.loads((out / "checkpoints" / f"step_{step}" / "routemix_state_0.json").read_text())["sampler"]
    return {name: state["epoch"][name] * state["sizes"][name] + state["cursor"][name] for name in state["names"]}


RULES = {"paper": ["--update", "paper", "--eta", "30"], "default": []}


@pytest.fixture(scope="module", params=sorted(RULES))
def runs(request, tmp_path_factory):
    """The same 16-step run without a cap and with --max-epochs 1, under the paper's rule (eta 30, so that the
    favoured dataset takes most of the weight) and under the default rule, whichever it is: the cap holds for any."""
    tmp = tmp_path_factory.mktemp(f"caps-{request.param}")
    folder = small_one_favoured(tmp / "data")
    flags = ["--data", str(folder), "--max-steps", "16", "--probe-every", "4", "--probe-batches", "2", "--layers", "all",
             *RULES[request.param]]
    runs = {}
    for cap in ("None", "1"):
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            runs[cap] = (run_main(tmp, *flags, "--max-epochs", cap, "--out", str(tmp / cap)), printed.getvalue())
    return runs


def test_no_dataset_is_drawn_past_max_epochs(runs):
    uncapped, capped = drawn(runs["None"][0], 16), drawn(runs["1"][0], 16)
    assert uncapped["digits"] > SMALL  # negative control: without the cap the run repeats the small dataset
    assert capped["digits"] <= SMALL and all(n <= 10 * SMALL for n in capped.values())
    assert sum(capped.values()) >= 0.9 * sum(uncapped.values())  # the run drew as much: the rest went elsewhere
    updates = [json.loads(line) for line in (runs["1"][0] / "mixture.jsonl").read_text().splitlines()]
    assert updates[-1]["epochs_drawn"] == pytest.approx([capped[n] / (10 * SMALL if n != "digits" else SMALL)
                                                         for n in updates[-1]["names"]])


def test_the_excess_goes_to_the_others_in_proportion_to_their_weights(runs):
    updates = [json.loads(line) for line in (runs["1"][0] / "mixture.jsonl").read_text().splitlines()]
    names = updates[0]["names"]
    small = names.index("digits")
    capped = [u for u in updates if u["capped"]]
    assert len(capped) >= 2 and all(u["capped"] == ["digits"] for u in capped)
    for update in capped:
        proposed, after = update["weights_proposed"], update["weights_after"]
        assert after[small] < proposed[small]
        assert update["planned_epochs"][small] == pytest.approx(1.0, abs=1e-9)  # exactly at the cap, as planned
        others = [i for i in range(len(names)) if i != small]
        factor = after[others[0]] / proposed[others[0]]
        assert factor > 1 and all(after[i] == pytest.approx(factor * proposed[i], rel=1e-9) for i in others)
    uncapped = [json.loads(line) for line in (runs["None"][0] / "mixture.jsonl").read_text().splitlines()]
    assert all(not u["capped"] and u["weights_after"] == pytest.approx(u["weights_proposed"], rel=1e-12) for u in uncapped)


def test_the_cap_is_printed_once_and_the_start_warns(runs):
    printed = runs["1"][1]
    assert printed.count("--max-epochs 1: at most {'code': 120, 'digits': 12, 'explain': 120, 'reasoning': 120}") == 1
    assert "warning: at its initial weight 'digits' would be drawn" in printed  # uniform already repeats it
    assert printed.count("--max-epochs caps") <= 1 and "digits" not in printed.split("--max-epochs caps")[-1][:20]
    updates = [json.loads(line) for line in (runs["1"][0] / "mixture.jsonl").read_text().splitlines()]
    assert all(u["max_epochs"] == 1.0 for u in updates) and "--max-epochs" not in runs["None"][1]
