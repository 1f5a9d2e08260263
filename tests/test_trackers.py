"""--report-to: the trackers RunLog starts through accelerate, and how a resumed run continues them.

TensorBoard runs for real in tests/test_run_outputs.py and tests/test_resume.py (each step once after a
resume). wandb and mlflow are not installed for the tests: their accelerate tracker objects are built and
wired for real, and only their `start`/`log` (the calls into those packages) are stood in for."""

import json
from types import SimpleNamespace

import pytest
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.tracking import MLflowTracker, WandBTracker

from lifecycle import run_folder
from lifecycle.run_folder import RunLog

NAMES = ["a", "b", "c"]
RECORD = {"step": 3, "names": NAMES, "weights_after": [0.2, 0.3, 0.5], "delta": [0.1, 0.2, 0.3], "dev_loss": [1.0, 2.0, 3.0],
          "seconds": 0.5, "histograms": [[[1, 2, 3, 4]], [[4, 3, 2, 1]], [[1, 1, 1, 1]]], "pairwise": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]}


def test_report_to_refuses_a_tracker_that_is_not_installed(monkeypatch, tmp_path):
    monkeypatch.setitem(run_folder.TRACKERS, "wandb", lambda: False)
    monkeypatch.setitem(run_folder.TRACKERS, "mlflow", lambda: False)
    with pytest.raises(SystemExit, match=r"--report-to wandb: the wandb package is not installed \(pip install wandb\)"):
        run_folder.trackers("wandb", tmp_path)
    assert [t.name for t in run_folder.trackers("all", tmp_path)] == ["tensorboard"]  # every one installed
    assert run_folder.trackers("none", tmp_path) is None


@pytest.fixture
def stand_ins(monkeypatch):
    """wandb's and mlflow's own calls replaced by records of what accelerate's trackers hand them."""
    calls = []
    monkeypatch.setitem(run_folder.TRACKERS, "wandb", lambda: True)
    monkeypatch.setitem(run_folder.TRACKERS, "mlflow", lambda: True)

    def wandb_start(self):
        self.run = SimpleNamespace(id=self.init_kwargs["id"], log=lambda values, step: calls.append(("wandb.log", step, values)))
        calls.append(("wandb.init", self.run_name, dict(self.init_kwargs)))

    def mlflow_start(self):
        self.active_run = SimpleNamespace(info=SimpleNamespace(run_id=self.run_id or "mlflow-run-1"))
        calls.append(("mlflow.start_run", self.experiment_name, self.run_name, self.run_id))

    monkeypatch.setattr(WandBTracker, "start", wandb_start)
    monkeypatch.setattr(WandBTracker, "store_init_configuration", lambda self, values: calls.append(("wandb.config", values)))
    monkeypatch.setattr(WandBTracker, "log_images", lambda self, values, step: calls.append(("wandb.images", step, list(values))))
    monkeypatch.setattr(WandBTracker, "finish", lambda self: None)
    monkeypatch.setattr(MLflowTracker, "start", mlflow_start)
    monkeypatch.setattr(MLflowTracker, "store_init_configuration", lambda self, values: calls.append(("mlflow.params", values)))
    monkeypatch.setattr(MLflowTracker, "log", lambda self, values, step: calls.append(("mlflow.log", step, values)))
    monkeypatch.setattr(MLflowTracker, "log_artifact", lambda self, path, artifact_path: calls.append(("mlflow.artifact", path, artifact_path)))
    monkeypatch.setattr(MLflowTracker, "finish", lambda self: None)
    return calls


def accelerator_for(report_to, out):
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    return Accelerator(cpu=True, log_with=run_folder.trackers(report_to, out))


def test_wandb_and_mlflow_get_the_scalars_and_heatmap_and_continue_their_runs_on_resume(stand_ins, tmp_path):
    calls, out = stand_ins, tmp_path / "my-run"
    out.mkdir()
    log = RunLog(out, NAMES, "cos", accelerator_for("all", out), step=0, config={"lr": 1e-3, "out": out})
    assert [t.name for t in log.accelerator.trackers] == ["tensorboard", "wandb", "mlflow"]
    (wandb_init, project, kwargs), mlflow_start = calls[0], calls[1]
    assert wandb_init == "wandb.init" and project == "routemix" and kwargs["name"] == "my-run" and kwargs["resume"] == "allow"
    assert mlflow_start == ("mlflow.start_run", "routemix", "my-run", None)
    assert ("wandb.config", {"lr": 1e-3, "out": str(out)}) in calls and ("mlflow.params", {"lr": 1e-3, "out": str(out)}) in calls

    log.metrics({"step": 3, "loss": 2.5, "lr": 1e-3, "tokens_per_s": 100.0}, grad_norm=0.7)
    log.mixture(RECORD)
    log.plots([(0, [1 / 3] * 3), (3, RECORD["weights_after"])], RECORD)
    scalars = {"losses/train": 2.5, "charts/lr": 1e-3, "charts/tokens_per_s": 100.0, "charts/grad_norm": 0.7}
    assert ("wandb.log", 3, scalars) in calls and ("mlflow.log", 3, scalars) in calls
    mixture = next(c for c in calls if c[0] == "wandb.log" and "mixture/weight_c" in c[2])[2]
    assert mixture["mixture/weight_c"] == 0.5 and mixture["losses/dev_b"] == 2.0 and mixture["mixture/delta_a"] == 0.1
    assert ("wandb.images", 3, ["mixture/routing"]) in calls
    assert ("mlflow.artifact", str(out / "plots" / "routing.png"), "routing/step_3") in calls
    log.close()
    ids = {"wandb": kwargs["id"], "mlflow": "mlflow-run-1"}
    assert run_folder.json.loads((out / "trackers.json").read_text()) == ids

    # a resume continues both runs (and does not set their parameters again)
    calls.clear()
    RunLog(out, NAMES, "cos", accelerator_for("all", out), step=3, config={"lr": 1e-3})
    assert calls[0][0] == "wandb.init" and calls[0][2]["id"] == ids["wandb"]
    assert calls[1] == ("mlflow.start_run", "routemix", "my-run", "mlflow-run-1")
    assert not [c for c in calls if c[0] in ("wandb.config", "mlflow.params")]


def test_tensorboard_after_a_resume_shows_each_step_once(tmp_path):
    """A run killed after logging step 6 resumes from its step-4 checkpoint and logs 5..8 again: TensorBoard's
    reader drops the first 5 and 6 (purge_step), so each step shows once, with the resumed run's values."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def log_steps(step, steps, loss):
        log = RunLog(tmp_path, NAMES, "cos", accelerator_for("tensorboard", tmp_path), step=step)
        for s in steps:
            log.metrics({"step": s, "loss": loss + s, "lr": 0.1, "tokens_per_s": 1.0}, grad_norm=1.0)
        log.close()

    log_steps(0, range(1, 7), 0.0)
    log_steps(4, range(5, 9), 100.0)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("losses/train")] == [(1, 1), (2, 2), (3, 3), (4, 4), (5, 105),
                                                                            (6, 106), (7, 107), (8, 108)]
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == list(range(1, 9))
