"""How busy the machine is: the benchmark waits for a quiet moment before each configuration and
records how much CPU other processes took while it ran (Linux /proc/stat).

On a shared machine, other processes take cores from the 2 threads a configuration runs with, and
a thread waiting at an OpenMP barrier for a descheduled peer makes small ops very slow; a run with
other processes busy beside it is slower by a factor no interleaving fully removes. The record
says which repetitions were disturbed.
"""

from __future__ import annotations

import os
import resource
import time


def busy_core_seconds() -> float:
    """Seconds of CPU time the whole machine has spent busy since boot (all cores, all processes)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """CPU seconds of this process's finished children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def busy_cores(seconds: float = 2.0) -> float:
    """Average number of busy cores over the next `seconds`."""
    start = busy_core_seconds()
    time.sleep(seconds)
    return (busy_core_seconds() - start) / seconds


def wait_until_quiet(max_busy_cores: float, max_wait_s: float) -> float:
    """Wait (at most `max_wait_s`) until other processes keep fewer than `max_busy_cores` cores busy;
    returns the last measurement."""
    deadline = time.monotonic() + max_wait_s
    busy = busy_cores()
    while busy > max_busy_cores and time.monotonic() < deadline:
        time.sleep(5)
        busy = busy_cores()
    return busy


class OthersMeter:
    """Busy cores taken by processes other than this one's children, between `start()` and `stop()`."""

    def start(self) -> None:
        self.wall, self.busy, self.children = time.perf_counter(), busy_core_seconds(), children_cpu_seconds()

    def stop(self) -> float:
        wall = time.perf_counter() - self.wall
        others = (busy_core_seconds() - self.busy) - (children_cpu_seconds() - self.children)
        return max(0.0, others) / wall
