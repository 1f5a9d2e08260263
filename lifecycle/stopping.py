"""SIGTERM and SIGINT stop training at the end of the current optimizer step, with a complete checkpoint.

    stopping.install()                   # once per process, before main()
    stopping.arm()                       # the training loop starts: from now on a signal saves first
    ... each optimizer step:  stop = stopping.agreed(accelerator)    # the same answer on every rank
    ... after the checkpoint: raise SystemExit(stopping.EXIT_STOPPED)

The first signal (SIGTERM: what Slurm and Kubernetes send before they preempt; SIGINT: Ctrl-C) lets
the step finish; every rank then saves a checkpoint of that step, and the run exits with status
EXIT_STOPPED and a one-line message. Running the same command again continues exactly. A second
signal, or one before the training loop starts (nothing to save yet), ends the process at once.

A signal may reach only some ranks, so the ranks agree once per optimizer step, at its end, through
one small all-reduce (nothing on a single process): all of them stop after the same step.

What reaches train.py (accelerate 1.x, torch 2.x):
- `python train.py`: the signal itself.
- `accelerate launch` with one process (accelerate's `simple_launcher`): Ctrl-C reaches the launcher and train.py
  alike (one process group). accelerate 1.16's launcher passes SIGINT and SIGTERM on to train.py as SIGTERM and
  kills it a few seconds later; older versions forward nothing and die, which used to leave train.py running,
  orphaned. train.py therefore asks the kernel (`PR_SET_PDEATHSIG`, Linux) for a SIGTERM when its launcher ends.
  What the launcher sends right after the first signal, and whatever arrives once it has ended, is that same event
  delivered again (`relayed`), not a second signal: a second Ctrl-C a moment later still stops at once.
- `accelerate launch` with several processes (torch's elastic agent, `torchrun`): SIGTERM, SIGINT,
  SIGHUP and SIGQUIT are forwarded to every rank, and ranks still running after
  `TORCH_ELASTIC_SHUTDOWN_TIMEOUT` seconds (default 30) are killed: set it above a checkpoint save's time.
The launchers report a stopped train.py with their own status (accelerate 1.16: 130 after Ctrl-C, 128 + the signal
otherwise; README, "Stopping"); `python train.py` returns EXIT_STOPPED.
In a container the first process's end kills the rest, so there a one-process run is `python train.py`
or `torchrun --nproc_per_node 1 train.py` under an init that forwards signals (README, "Stopping").
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time

EXIT_STOPPED = 75
"""The exit status of a run stopped by a signal after saving (EX_TEMPFAIL: run the same command again later)."""
SIGNALS = (signal.SIGTERM, signal.SIGINT)
PR_SET_PDEATHSIG = 1
LAUNCHERS = (b"accelerate", b"torchrun", b"torch.distributed.run")

RELAY_SECONDS = 1.0
"""How soon after the first signal a launcher's forwarded copy of the same signal arrives; a person's second Ctrl-C
comes later."""

_state = {"armed": False, "signal": None, "since": 0.0, "launcher": None}


def _handler(signum: int, frame) -> None:
    if _state["signal"] is not None and relayed(signum):
        # the launcher passing on the signal the user sent to it and to train.py alike (Ctrl-C reaches the whole
        # process group), or its parent-death SIGTERM, possibly delivered more than once: the same event, not a
        # second signal (SIGKILL still stops)
        return
    if not _state["armed"] or _state["signal"] is not None:  # nothing to save yet, or the second signal
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    _state["signal"], _state["since"] = signum, time.monotonic()
    os.write(2, f"\nroutemix: {signal.Signals(signum).name}: stopping after this optimizer step, with a checkpoint "
                "(a second signal stops at once)\n".encode())


def relayed(signum: int) -> bool:
    """Whether signal `signum`, after the first one, comes from this process's launcher rather than from a person: the
    launcher has ended (the kernel's parent-death SIGTERM), or it is passing the first signal on: a SIGTERM after a
    Ctrl-C (accelerate's one-process launcher turns SIGINT into SIGTERM; nobody types a SIGTERM), or the same signal
    again at once (torchrun forwards SIGINT to every rank, which the terminal has sent them already)."""
    launcher = _state["launcher"]
    if launcher is None:
        return False
    if os.getppid() != launcher or (_state["signal"], signum) == (signal.SIGINT, signal.SIGTERM):
        return True
    return signum == _state["signal"] and time.monotonic() - _state["since"] < RELAY_SECONDS


def install() -> None:
    """Handle SIGTERM and SIGINT, and have the kernel send SIGTERM when the launcher that started this process ends."""
    for signum in SIGNALS:
        signal.signal(signum, _handler)
    parent = os.getppid()
    try:
        with open(f"/proc/{parent}/cmdline", "rb") as f:
            launched = any(name in f.read() for name in LAUNCHERS)
    except OSError:  # not Linux
        return
    requested = launched and ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0
    _state["launcher"] = parent if requested else None
    if requested and os.getppid() != parent:  # the launcher ended before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def arm() -> None:
    """From now on the first signal stops after the current optimizer step (a checkpoint is worth saving)."""
    _state["armed"] = True


def agreed(accelerator) -> bool:
    """Whether to stop after this optimizer step; every rank calls it once per step and gets the same answer.
    Remembers which signal it was, for `message`."""
    got = [_state["signal"] == signal.SIGTERM, _state["signal"] == signal.SIGINT]
    if accelerator.num_processes > 1:
        import torch

        got = accelerator.reduce(torch.tensor(got, dtype=torch.int32, device=accelerator.device), "sum").tolist()
    if not any(got):
        return False
    _state["agreed"] = "SIGTERM" if got[0] else "SIGINT"
    return True


def message(step: int, max_steps: int, checkpoint, again: str = "the same command") -> str:
    """The one line a stopped run ends with; `again` is what continues it (a run in a default folder needs its
    `--out`: the same command alone would start a new run in a new folder)."""
    return (f"routemix: stopped by {_state.get('agreed', 'a signal')} after step {step} of {max_steps}; "
            f"{checkpoint} is complete: run {again} to continue (exit status {EXIT_STOPPED})")


def exit_stopped(step: int, max_steps: int, checkpoint, is_main: bool, again: str = "the same command") -> None:
    if is_main:
        print(message(step, max_steps, checkpoint, again), file=sys.stderr, flush=True)
    raise SystemExit(EXIT_STOPPED)
