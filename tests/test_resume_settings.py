"""What a resume may change, and what it may not (README, "Resume"); and a damaged checkpoint, which a resume skips
for the newest one that verifies. Runs in this process (train.main), on a small copy of the demo data."""

import json
import math
import shutil

import pytest
from safetensors.torch import load_file

from lifecycle import checkpoint
from lifecycle import config
import train
from test_bad_input import run_main, small_data

RUN = ["--max-steps", "8", "--probe-every", "3", "--save-every", "2", "--keep-checkpoints", "10", "--seed", "5"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 8-step run with a checkpoint every 2 steps: the reference of every test here (never modified)."""
    root = tmp_path_factory.mktemp("settings")
    folder = small_data(root / "data")
    out = run_main(root, "--data", str(folder), "--out", str(root / "finished"), *RUN)
    return folder, out


def copy_at(finished, tmp_path, step: int):
    """A copy of the finished run as it was when its checkpoint `step` had just been written (later ones and final/
    removed): a run killed there."""
    folder, out = finished
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "final")
    for later in (copy / "checkpoints").iterdir():
        if int(later.name.split("_")[1]) > step:
            shutil.rmtree(later)
    return folder, copy


def metrics(out) -> dict[int, dict]:
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {m["step"]: {k: v for k, v in m.items() if k != "tokens_per_s"} for m in lines}


def model(out) -> dict:
    return load_file(out / "final" / "model.safetensors")


def assert_same_model(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


@pytest.mark.parametrize("flags, change", [
    (["--lr", "0.002"], "--lr was 0.001, now 0.002"),  # was ignored on resume while config.json recorded it
    (["--eta", "5"], "--eta was 0.3, now 5.0"),  # a finished folder used to "resume", train nothing, exit 0
    (["--distance", "l2"], "--distance was 'cos', now 'l2'"),
    (["--no-freeze-router"], "--freeze-router was True, now False"),  # was a cryptic optimizer error
    (["--seed", "6"], "--seed was 5, now 6"),
    (["--grad-accum", "2"], "--grad-accum was 1, now 2"),
    (["--probe-every", "4"], "--probe-every was 3, now 4"),
    (["--c", "0.1"], "--c was 0.05, now 0.1"),
    (["--chat-template", "vicuna"], "--chat-template was None, now 'vicuna'"),
    (["--mix", "static"], "--mix was 'dynamic', now 'static'"),
])
def test_a_resume_that_changes_what_is_trained_is_refused_before_anything_is_written(finished, tmp_path, flags, change):
    folder, out = finished
    before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file() and path.name != "run.lock"}
    with pytest.raises(SystemExit) as refused:
        run_main(tmp_path, "--data", str(folder), "--out", str(out), *RUN, *flags)
    message = str(refused.value)
    assert message.startswith(f"cannot resume from {out / 'checkpoints' / 'step_8'}: settings that change what is "
                              f"trained differ: {change}. Resume with the checkpoint's values")
    assert "a resume may change only --max-steps, --log-every" in message
    after = {path: path.read_bytes() for path in out.rglob("*") if path.is_file() and path.name != "run.lock"}
    assert after == before  # config.json included


@pytest.mark.parametrize("key, value", [
    ("max_steps", 20), ("log_every", 5), ("report_to", "none"), ("save_every", 7), ("keep_checkpoints", 1),
    ("push_to_hub", "me/model"), ("out", "elsewhere"),
    ("resume", "none"), ("data", "moved/data"), ("skip_bad_records", True), ("skip_nonfinite", 3),
    ("debug_checks", True), ("probe_only", True), ("trust_remote_code", True), ("attn_implementation", "eager"),
    ("gradient_checkpointing", True),
])
def test_every_setting_a_resume_may_change_is_accepted(key, value):
    assert set(config.MAY_CHANGE_ON_RESUME) <= set(config.Args.__dataclass_fields__)
    saved = config.run_fingerprint(config.resolve_defaults(config.Args()), {"a": 1, "b": 2}, [0.5, 0.5], None)
    now = {**saved, key: value}
    notes = config.changes_on_resume(saved, now, 4, "refused")
    assert notes == ([f"--max-steps was 300, now 20 (at step 4): {config.MAY_CHANGE_ON_RESUME['max_steps']}"]
                     if key == "max_steps" else [])
    with pytest.raises(SystemExit, match=r"^refused: settings that change what is trained differ: --eta was 0.3, now 1"):
        config.changes_on_resume(saved, {**now, "eta": 1.0}, 4, "refused")


def test_logging_checkpoint_and_check_settings_may_change_and_the_run_stays_exact(finished, tmp_path):
    folder, copy = copy_at(finished, tmp_path, step=4)
    run_main(tmp_path, "--data", str(folder), "--out", str(copy), *RUN, "--log-every", "2", "--save-every", "3",
             "--keep-checkpoints", "1", "--debug-checks", "--skip-nonfinite", "1")
    reference = metrics(finished[1])
    assert metrics(copy) == {step: reference[step] for step in (1, 2, 3, 4, 6, 8)}  # logged every 2 after step 4
    assert_same_model(model(copy), model(finished[1]))
    assert [p.name for p in (copy / "checkpoints").iterdir()] == ["step_8"]  # saved at 6 and 8; 1 kept
    assert (copy / "debug" / "rank_0.jsonl").exists()


def test_max_steps_extends_the_schedule_and_cannot_go_below_the_checkpoint(finished, tmp_path, capsys):
    folder, out = finished
    extended = tmp_path / "extended"
    shutil.copytree(out, extended)
    run_main(tmp_path, "--data", str(folder), "--out", str(extended), *RUN, "--max-steps", "12")
    assert ("resume: --max-steps was 8, now 12 (at step 8): the run is extended or shortened: the remaining steps "
            "follow the LR schedule of a run of the new length") in capsys.readouterr().out
    logged = metrics(extended)
    assert sorted(logged) == list(range(1, 13)) and {s: logged[s] for s in range(1, 9)} == metrics(out)
    # the schedule of a 12-step run, written out: 1 warmup step (3% of 12, rounded up), then cosine from the peak
    # to 0 over the other 11; the LR logged at step s is the one step s + 1 uses, 0.5 (1 + cos(pi (s - 1) / 11))
    expected = [1e-3 * 0.5 * (1 + math.cos(math.pi * (s - 1) / 11)) for s in range(9, 13)]
    assert [logged[s]["lr"] for s in range(9, 13)] == pytest.approx(expected, rel=1e-12, abs=1e-18)
    assert logged[12]["lr"] == pytest.approx(0.0, abs=1e-18)
    assert json.loads((extended / "config.json").read_text())["max_steps"] == 12
    with pytest.raises(SystemExit, match=r"it is at step 12, past --max-steps 6; pass --max-steps >= 12"):
        run_main(tmp_path, "--data", str(folder), "--out", str(extended), *RUN, "--max-steps", "6")


def test_a_damaged_checkpoint_is_named_and_skipped_for_the_newest_that_verifies(finished, tmp_path, capsys):
    folder, copy = copy_at(finished, tmp_path, step=8)
    damaged = copy / "checkpoints" / "step_8"
    weights = damaged / "model.safetensors"
    size = weights.stat().st_size
    with open(weights, "r+b") as f:
        f.truncate(size // 2)  # what a full disk or an interrupted copy leaves
    flipped = copy / "checkpoints" / "step_6" / "optimizer.bin"
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 1
    flipped.write_bytes(bytes(data))  # same size, one bit: its SHA-256 in the marker catches it
    assert checkpoint.verify(damaged) == f"model.safetensors has {size // 2} bytes, its marker recorded {size}"
    assert checkpoint.verify(flipped.parent) == "optimizer.bin does not match its SHA-256 in the marker"

    run_main(tmp_path, "--data", str(folder), "--out", str(copy), *RUN)
    out = capsys.readouterr().out
    assert (f"warning: damaged checkpoints {damaged} (model.safetensors has {size // 2} bytes, its marker recorded "
            f"{size}); {flipped.parent} (optimizer.bin does not match its SHA-256 in the marker): resuming from "
            f"{copy / 'checkpoints' / 'step_4'}") in out
    assert f"moving {damaged} to damaged-step_8: damaged" in out  # kept for inspection, out of the way
    assert (copy / "checkpoints" / "damaged-step_8" / "model.safetensors").stat().st_size == size // 2
    assert_same_model(model(copy), model(finished[1]))  # steps 5-8 again: the same model
    assert metrics(copy) == metrics(finished[1])
