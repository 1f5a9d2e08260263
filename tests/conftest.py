"""Session settings: one torch thread per test process; `datasets` caches in a temporary folder, so that the many
small data folders the tests read (sources.py caches each as Arrow) do not pile up in the user's Hugging Face cache;
and every shape torch compiles flex_attention for is a static one.

One thread: the tests' models are tiny, and pytest-xdist already runs one worker per core, each starting train.py
subprocesses (tests/launch.py gives them one thread too). Two threads per process would put more threads than
cores on the machine, and OpenMP threads waiting at barriers for a descheduled peer cost more than they gain.

transformers compiles flex_attention once per process with torch.compile's default `dynamic=None`: the second
shape it sees recompiles with dynamic shapes, and torch 2.13's CPU flex-attention template does not compile with
dynamic shapes (inductor CppCompileError, "cur_qSplitSize4 was not declared"). A training run feeds one shape
(rows x seq-len), so only a test process that tries many shapes meets it."""

import os
import shutil
import tempfile

import torch
import torch._dynamo

torch.set_num_threads(1)
torch._dynamo.config.automatic_dynamic_shapes = False
torch._dynamo.config.recompile_limit = 64  # one static compile per shape, never the unfused fallback

_CACHE = None
if "HF_DATASETS_CACHE" not in os.environ:  # set before any test module imports datasets (which reads it once)
    _CACHE = os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="routemix-tests-datasets-")


def pytest_unconfigure(config):
    if _CACHE:
        shutil.rmtree(_CACHE, ignore_errors=True)


def pytest_terminal_summary(terminalreporter):
    """A skipped sandbox test proves nothing about the sandbox: say so plainly (CI, `.ci/run`, fails on any skip)."""
    skipped = [report for report in terminalreporter.stats.get("skipped", []) if "sandbox" in report.nodeid]
    if skipped:
        terminalreporter.section("sandbox claims NOT verified on this machine", sep="!", yellow=True, bold=True)
        for report in skipped:
            reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            terminalreporter.write_line(f"{report.nodeid}: {reason}")
