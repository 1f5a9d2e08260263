"""Step timing shared by every configuration: a tick at the start of each step, tokens per step,
and the throughput of a window of steps after warm-up.

A configuration ticks once per optimizer step, at the same point of every step (routemix: when the
loop asks for its next batch; the Trainers: `on_step_begin`), and counts the tokens each step's
forward saw. The interval from tick `i` to tick `i + 1` is one whole loop cycle: data, forward,
backward, optimizer, and whatever the loop does once in a while (probes, logging).
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field


@dataclass
class StepClock:
    created: float = field(default_factory=time.perf_counter)
    """Create the clock first thing: `created` to the first tick is the configuration's setup (model, data, tokenising)."""
    wall: list[float] = field(default_factory=list)
    """`time.perf_counter()` at the start of each step."""
    cpu: list[float] = field(default_factory=list)
    """`time.process_time()` (all threads of this process) at the start of each step."""
    real_tokens: list[int] = field(default_factory=list)
    """Non-padding tokens fed to the model, per step."""
    assistant_tokens: list[int] = field(default_factory=list)
    """Tokens that carry a loss (next-token targets), per step."""

    def tick(self) -> None:
        self.wall.append(time.perf_counter())
        self.cpu.append(time.process_time())

    def count(self, real: int, assistant: int) -> None:
        self.real_tokens.append(int(real))
        self.assistant_tokens.append(int(assistant))

    def window(self, warmup: int, steps: int) -> dict:
        """Throughput over steps `warmup + 1 .. warmup + steps` (1-based), from tick `warmup` to tick `warmup + steps`."""
        if len(self.wall) < warmup + steps + 1 or len(self.real_tokens) < warmup + steps:
            raise RuntimeError(
                f"the run ended early: {len(self.wall)} ticks and {len(self.real_tokens)} counted steps, "
                f"need {warmup + steps + 1} and {warmup + steps}"
            )
        seconds = self.wall[warmup + steps] - self.wall[warmup]
        cpu_seconds = self.cpu[warmup + steps] - self.cpu[warmup]
        real = sum(self.real_tokens[warmup : warmup + steps])
        assistant = sum(self.assistant_tokens[warmup : warmup + steps])
        return {
            "setup_seconds": self.wall[0] - self.created,
            "steps": steps,
            "seconds": seconds,
            "real_tokens": real,
            "assistant_tokens": assistant,
            "real_tokens_per_s": real / seconds,
            "assistant_tokens_per_s": assistant / seconds,
            "real_tokens_per_cpu_s": real / cpu_seconds,
            "step_seconds": [self.wall[i + 1] - self.wall[i] for i in range(warmup, warmup + steps)],
        }


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
