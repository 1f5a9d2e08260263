"""One run per folder: a second run on a folder in use stops with a message naming the holder, a lock left by a dead
run is taken over, and default run folders never collide."""

import errno
import json
import os
import re
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import psutil
import pytest

from lifecycle import run_lock
from launch import TINY_RUN, launch_command, start

MAIN = SimpleNamespace(is_main_process=True, num_processes=1)  # what claim() needs of a one-process accelerator


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_two_runs_on_one_folder_one_second_apart(tmp_path):
    out = tmp_path / "run"
    run = [*TINY_RUN, "--max-steps", "16", "--probe-every", "4", "--save-every", "8"]
    first = start(launch_command(out, *run), tmp_path / "first")
    time.sleep(1)
    second = start(launch_command(out, *run), tmp_path / "second")
    assert second.wait(timeout=600) != 0, "the second run must stop"
    stderr = (tmp_path / "second" / "stderr").read_text()
    assert first.poll() is None, "the first run is still training when the second one stops"
    [trainer] = psutil.Process(first.pid).children()
    message = (rf"{re.escape(str(out))} is in use by another run: pid {trainer.pid} on host {re.escape(socket.gethostname())}, "
               rf"started \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d \(\S*train.py --out {re.escape(str(out))} .*\) holds "
               rf"{re.escape(str(out / 'run.lock'))}\. Wait for it to end or stop it, or pass another --out")
    assert re.search(message, stderr), stderr[-3000:]

    assert first.wait(timeout=600) == 0, (tmp_path / "first" / "stderr").read_text()[-3000:]
    metrics = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert metrics == list(range(1, 17))  # every step once: nothing interleaved, nothing truncated
    assert [json.loads(line)["step"] for line in (out / "mixture.jsonl").read_text().splitlines()] == [4, 8, 12, 16]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_16", "step_8"]
    assert (out / "run.lock").read_text() == ""  # released at the end
    assert "taking over" not in (tmp_path / "first" / "stdout").read_text()


def test_a_lock_left_by_a_dead_run_is_taken_over_and_named(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    pid = dead_pid()
    (out / "run.lock").write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": "2025-01-01 00:00:00",
                                              "command": "train.py --out run"}))
    folder, lock = run_lock.claim(MAIN, out)
    assert folder == out
    assert (f"taking over {out / 'run.lock'} from pid {pid} on host {socket.gethostname()}, started 2025-01-01 00:00:00 "
            "(train.py --out run), which ended without releasing it") in capsys.readouterr().out
    holder = json.loads((out / "run.lock").read_text())
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    # held: a second claim from another process is refused, naming this one
    refused = subprocess.run([sys.executable, "-c", f"from lifecycle import run_lock; run_lock.RunLock(__import__('pathlib').Path({str(out)!r}))"],
                             capture_output=True, text=True, timeout=60, check=False, env={**os.environ, "PYTHONPATH": "."})
    assert f"RunFolderInUse: {out} is in use by another run: pid {os.getpid()} on host" in refused.stderr
    lock.release()
    assert (out / "run.lock").read_text() == ""
    run_lock.claim(MAIN, out)[1].release()
    assert "taking over" not in capsys.readouterr().out  # a clean release leaves nothing to take over


def test_without_flock_the_holder_pid_decides(tmp_path, monkeypatch):
    def no_flock(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(run_lock.fcntl, "flock", no_flock)
    out = tmp_path / "run"
    out.mkdir()
    holder = {"host": socket.gethostname(), "started": "2025-01-01 00:00:00", "command": "train.py"}
    (out / "run.lock").write_text(json.dumps({**holder, "pid": os.getppid()}))  # alive
    with pytest.raises(SystemExit, match=rf"pid {os.getppid()} on host .*\(if it has ended, delete {out / 'run.lock'}\)"):
        run_lock.claim(MAIN, out)
    (out / "run.lock").write_text(json.dumps({**holder, "pid": dead_pid()}))
    run_lock.claim(MAIN, out)[1].release()


def test_default_run_folders_never_collide(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(run_lock.time, "strftime", lambda fmt: "20250101-000000")  # every job in the same second
    folders = [run_lock.claim(MAIN, None) for _ in range(3)]
    assert [str(folder) for folder, _ in folders] == ["runs/20250101-000000", "runs/20250101-000000-2",
                                                      "runs/20250101-000000-3"]
    for folder, lock in folders:
        assert folder.is_dir() and json.loads((folder / "run.lock").read_text())["pid"] == os.getpid()
        lock.release()
