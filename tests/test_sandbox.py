"""The code sandbox run by root (the usual case in containers, and the case here): the program gives up root, so
the process limit binds and root-only files stay closed, and its working directory has a total size cap.
(Network, timeout and writes outside the directory: tests/test_eval.py.)"""

import os

import pytest

from eval.sandbox import SANDBOX_UID_BASE, Limits, namespace_command, privilege_drop, run_program

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="not root: the privilege drop a sandbox run by root makes is not tested here")


@as_root
def test_run_by_root_the_program_is_not_root_and_cannot_fork_or_read_root_only_files():
    assert privilege_drop() is not None  # here: /root/.pyenv is only root's, so the interpreter is bind-mounted
    result = run_program("import os\nprint(os.getuid(), os.getgid(), os.getgroups())\n")
    uid, gid, groups = result.output.split(maxsplit=2)
    assert result.passed and int(uid) == int(gid) > SANDBOX_UID_BASE and groups.strip() == "[]"
    assert os.stat("/etc/shadow").st_mode & 0o004 == 0  # root-only, as on every distribution
    shadow = run_program("print(len(open('/etc/shadow').read()))\n")
    assert shadow.status == "failed" and "PermissionError: [Errno 13] Permission denied: '/etc/shadow'" in shadow.output

    forks = run_program("import os\nn = 0\nfor _ in range(200):\n    if os.fork() == 0:\n        os._exit(0)\n"
                        "    n += 1\nprint('forked', n)\n")
    assert forks.status == "failed" and "BlockingIOError: [Errno 11]" in forks.output and "forked" not in forks.output
    one_allowed = run_program("import os\npid = os.fork()\nif pid == 0:\n    os._exit(0)\nos.waitpid(pid, 0)\n"
                              "print('forked')\n", Limits(processes=1))
    assert (one_allowed.status, one_allowed.output) == ("passed", "forked\n")  # the limit is the one asked for


@pytest.mark.skipif("--mount" not in namespace_command(), reason="no mount namespace: the sandbox's write cap (a tmpfs in one) is not tested here")
def test_many_files_cannot_add_up_beyond_the_write_cap():
    # 300 files of 1 MiB: each is under RLIMIT_FSIZE (16 MiB), together far over the 64 MiB cap
    program = ("import os\nfor i in range(300):\n    with open(f'part{i}', 'wb') as f:\n        f.write(b'x' * (1 << 20))\n"
               "    print(i, flush=True)\n")
    result = run_program(program)
    assert result.status == "failed" and "OSError: [Errno 28] No space left on device" in result.output
    written = [int(line) for line in result.output.splitlines() if line.isdigit()]
    assert 50 <= len(written) <= 64  # every file up to the cap, none beyond it
    small = run_program("open('note.txt', 'w').write('ok')\nprint(open('note.txt').read())\n", Limits(disk_bytes=1 << 20))
    assert (small.status, small.output) == ("passed", "ok\n")
