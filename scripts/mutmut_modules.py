"""Mutation testing with mutmut, module by module, each with only the fast tests that cover it.

    pip install mutmut                                   # a developer tool, not in the locks
    nice -n 15 python scripts/mutmut_modules.py          # every module below
    nice -n 15 python scripts/mutmut_modules.py sampler  # some of them

For each module, a copy of the working tree in a temporary folder gets a `setup.cfg` that tells mutmut what to
mutate and which tests to run; mutmut runs there with one worker (`--max-children 1`), so the repository is left as
it was. The report: per module, mutants, killed, survived, and the survivors that `tests/mutation_equivalents.md`
explains (a survivor that it does not list is a test to write). Exit status 1 when an unexplained mutant
survives. `scripts/mutation_check.py` keeps the end-to-end bugs a per-module tool cannot reach (signals,
launchers, processes, `train.main`).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EQUIVALENTS = REPO / "tests" / "mutation_equivalents.md"

# module -> (file, mutant names to run (mutmut's globs), the fast tests that cover it)
MODULES = {
    "sampler": ("sampler.py", ["sampler.*"], ["tests/test_sampler.py"]),
    "routing": ("routing.py", ["routing.*"], ["tests/test_routing.py"]),
    "mixture": ("mixture.py", ["mixture.*"], ["tests/test_mixture.py"]),
    "records": ("reading/records.py", ["reading.records.*"], ["tests/test_sources.py"]),
    # the packing only: the bin packing, the packed stream and its collation
    "packing": ("reading/data.py", ["reading.data.x_best_fit*", "reading.data.x_pack_*", "reading.data.x_pack__*",
                                    "reading.data.xǁPackedStreamǁ*", "reading.data.x_collate_packed*",
                                    "reading.data.x_count_targets*"], ["tests/test_data.py"]),
    # module-level helpers; `main` runs end to end (scripts/mutation_check.py)
    "train": ("train.py", ["train.x_lr_lambda*", "train.x_probe_lengths*", "train.x_step_capacity*",
                           "train.x_counted_datasets*", "train.x_forward_backward*", "train.x_update_rule*",
                           "train.x_build_optimizer*"],
              ["tests/test_train.py::test_target_head_gives_the_full_logits_loss_and_gradients",
               "tests/test_train.py::test_gradient_accumulation_matches_one_big_batch", "tests/test_train_units.py",
               "tests/test_mixture.py::test_delta_ema_and_the_rule_flags_reach_the_rule_train_uses"]),
}
COPIED = ["train.py", "sampler.py", "routing.py", "mixture.py", "reading", "lifecycle", "models", "outputs", "extras",
          "eval", "scripts", "data", "pytest.ini"]


def equivalents() -> set[str]:
    """The mutant names `tests/mutation_equivalents.md` explains (each line: `- name: reason`)."""
    return set(re.findall(r"^- `?([\w.ǁ]+__mutmut_\d+)`?:", EQUIVALENTS.read_text(), re.M)) if EQUIVALENTS.exists() else set()


def run_module(name: str, work: Path, only: list[str] | None = None) -> dict[str, list[str]]:
    file, globs, tests = MODULES[name]
    copy = work / name
    copy.mkdir()
    for entry in COPIED + ["tests"]:
        source = REPO / entry
        if source.is_dir():
            shutil.copytree(source, copy / entry, ignore=shutil.ignore_patterns("__pycache__", "mutants"))
        else:
            shutil.copy2(source, copy / entry)
    sources = "\n    ".join(entry for entry in COPIED if entry.endswith(".py") or (REPO / entry).is_dir())
    # one process (-n 0, not pytest.ini's xdist workers): mutmut runs the tests in its own process
    selection = "\n    ".join(["-n", "0", "-x", "-q", "-p", "no:cacheprovider", *tests])
    (copy / "setup.cfg").write_text(f"[mutmut]\nsource_paths=\n    {sources}\nonly_mutate=\n    {file}\n"
                                    f"also_copy=\n    pytest.ini\n    data\npytest_add_cli_args_test_selection=\n"
                                    f"    {selection}\n")
    patterns = [re.compile(g.replace(".", r"\.").replace("*", ".*") + "$") for g in globs]
    chosen = [m for m in only if any(p.match(m) for p in patterns)] if only else globs
    if not chosen:
        return {}
    subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", "1", *chosen], cwd=copy, check=False,
                   stdout=subprocess.DEVNULL)
    results = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=copy,
                             capture_output=True, text=True).stdout
    status: dict[str, list[str]] = {}
    for line in results.splitlines():
        mutant, _, outcome = line.strip().partition(": ")
        if outcome and any(p.match(mutant) for p in patterns) and (not only or mutant in only):
            status.setdefault(outcome.strip(), []).append(mutant)
    return status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"some of {', '.join(MODULES)} (default: all)")
    parser.add_argument("--keep", action="store_true", help="keep the copies (mutmut browse, mutmut show NAME)")
    parser.add_argument("--mutants", nargs="+", metavar="NAME", help="run only these mutants (e.g. the survivors of "
                        "an earlier run, after writing tests for them)")
    args = parser.parse_args()
    if set(args.modules) - set(MODULES):
        parser.error(f"unknown modules {sorted(set(args.modules) - set(MODULES))}; known: {', '.join(MODULES)}")
    explained, unexplained = equivalents(), 0
    work = Path(tempfile.mkdtemp(prefix="routemix-mutmut-"))
    print(f"{'module':10} {'mutants':>8} {'killed':>7} {'survived':>9} {'equivalent':>11}  other")
    for name in args.modules or MODULES:
        status = run_module(name, work, args.mutants)
        if not status:
            continue
        survived = status.get("survived", [])
        equivalent = [m for m in survived if m in explained]
        other = {k: len(v) for k, v in status.items() if k not in ("killed", "survived")}
        print(f"{name:10} {sum(map(len, status.values())):8} {len(status.get('killed', [])):7} {len(survived):9} "
              f"{len(equivalent):11}  {other or ''}", flush=True)
        for mutant in sorted(set(survived) - set(equivalent)):
            print(f"    survived: {mutant}")
            unexplained += 1
    if args.keep:
        print(f"copies kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
