"""One run per folder: the main process holds `<out>/run.lock` for the run's lifetime.

    out, lock = run_lock.claim(accelerator, args.out)   # every rank; stops when another run holds `out`
    with lock.released_if_refused():                     # checks that may refuse the run
        ...
    ...
    lock.release()

The lock is an exclusive `flock` on the file, which the kernel drops when its process ends however it
ends, so a lock left by a killed run is taken over without asking. The file names its holder (pid,
host, start time, command) for the message that the second run prints; a clean release empties it, so
a previous holder named in it ended without releasing (crashed or was killed). On a file system without
`flock` (some Lustre mounts) the holder's pid is checked instead, on the same host only.

Without `--out`, the run folder is `runs/<timestamp>`, created atomically (`-2`, `-3`, ... when a
job started in the same second took the name) and handed by the main process to the other ranks.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path

LOCK = "run.lock"
_held: dict[str, int] = {}  # lock path -> descriptor, for a second main() in one process (tests)


class RunFolderInUse(Exception):
    """Another live run holds the folder's lock."""


def describe(holder: dict) -> str:
    return (f"pid {holder.get('pid')} on host {holder.get('host')}, started {holder.get('started')} "
            f"({holder.get('command')})")


def read_holder(fd: int) -> dict | None:
    text = os.pread(fd, 1 << 16, 0).decode(errors="replace").strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return {"pid": "?", "host": "?", "started": "?", "command": text[:200]}


def alive_here(holder: dict) -> bool:
    """Whether the holder is a live process of this host (the check without `flock`)."""
    if holder.get("host") != socket.gethostname():
        return True  # another host's process cannot be checked from here: assume it runs
    try:
        if int(holder["pid"]) == os.getpid():
            return False  # an earlier main() of this very process
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, KeyError):
        return True
    return True


class RunLock:
    """The held lock of one run folder."""

    def __init__(self, out: Path, created: bool = False):
        self.path, self.created = out / LOCK, created  # created: the folder did not exist before this run
        key = str(self.path.resolve())
        if key in _held:  # an earlier main() of this very process that ended by an exception: it is over
            os.close(_held.pop(key))
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = read_holder(fd)
            os.close(fd)
            raise RunFolderInUse(self.in_use(out, holder)) from None
        except OSError as error:
            if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
            if (holder := read_holder(fd)) is not None and alive_here(holder):  # no flock: the holder's pid decides
                os.close(fd)
                raise RunFolderInUse(self.in_use(out, holder) + f" (if it has ended, delete {self.path})") from None
        holder = read_holder(fd)
        if holder is not None and holder.get("pid") != os.getpid():
            print(f"taking over {self.path} from {describe(holder)}, which ended without releasing it")
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
              "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        self.fd = _held[key] = fd
        self.key = key

    def in_use(self, out: Path, holder: dict | None) -> str:
        who = describe(holder) if holder else "a run that has not written its name yet"
        return (f"{out} is in use by another run: {who} holds {self.path}. Wait for it to end or stop it, "
                "or pass another --out")

    def release(self) -> None:
        """Empty the file (a clean end) and drop the lock."""
        if _held.pop(self.key, None) is not None:
            os.ftruncate(self.fd, 0)
            os.close(self.fd)

    @contextmanager
    def released_if_refused(self):
        """Release the lock when the block stops the run (a refused resume, bad data, a bad flag value), so that the
        next run does not read it as a run that crashed; a folder this run created and left empty is removed."""
        try:
            yield
        except BaseException:
            self.release()
            folder = self.path.parent
            if self.created and [p.name for p in folder.iterdir()] == [LOCK]:
                shutil.rmtree(folder)
            raise


class NotHeld:
    """What the other ranks hold: nothing (the main process holds the lock for the whole run)."""

    def release(self) -> None:
        pass

    @contextmanager
    def released_if_refused(self):
        yield


def new_run_folder(root: Path) -> Path:
    """`root/<timestamp>`, created here and now; a name another job took in the same second gets `-2`, `-3`, ..."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        folder = root / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise SystemExit(f"cannot create a new run folder in {root}: 10000 names of {stamp} taken; pass --out")


def claim(accelerator, out: Path | None) -> tuple[Path, RunLock | NotHeld]:
    """The run folder, created and locked by the main process; every rank gets its path (the other ranks rely
    on the main process's lock and take none). Stops every rank when another run holds the folder."""
    from accelerate.utils import broadcast_object_list

    lock, answer = NotHeld(), [None, None]
    if accelerator.is_main_process:
        folder = out if out is not None else new_run_folder(Path("runs"))
        created = out is None or not folder.exists()
        folder.mkdir(parents=True, exist_ok=True)
        try:
            lock = RunLock(folder, created)
            answer = [str(folder), None]
        except RunFolderInUse as error:
            answer = [str(folder), str(error)]
    if accelerator.num_processes > 1:
        answer = broadcast_object_list(answer)
    folder, refusal = answer
    if refusal is not None:
        raise SystemExit(refusal if accelerator.is_main_process else 1)
    return Path(folder), lock
