"""Mutation check: put deliberate bugs into a copy of the code, one at a time, and make sure a test catches each.

    python scripts/mutation_check.py              # every mutation in MUTATIONS
    python scripts/mutation_check.py --only lr    # those whose name contains "lr"
    python scripts/mutation_check.py --list

Each mutation replaces one exact piece of source text (it must occur exactly once, or the mutation is
reported as stale: the code moved on and the mutation must be updated) in a temporary copy of the
repository, runs the tests that must catch it, and counts it caught when they fail. A surviving
mutation means a bug of that kind could land unnoticed. Exit status 1 when any mutation survives or is
stale. The copy is made once; each mutation is undone before the next.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    find: str
    replace: str
    tests: tuple[str, ...]


MUTATIONS = [
    # --- the bugs that once passed the suite
    Mutation("probe-tokens response counts the prompt", "train.py",
             'batch["token_mask"] & (batch["labels"] != data.IGNORE_INDEX) if dev.response_only',
             'batch["token_mask"] & (batch["labels"] == data.IGNORE_INDEX) if dev.response_only',
             ("tests/test_probe.py",)),
    Mutation("probe ignores --layers", "train.py",
             "g = routing.representations(histograms, args.layers)",
             'g = routing.representations(histograms, "last")',
             ("tests/test_probe.py",)),
    Mutation("--freeze-router does nothing", "routing.py",
             "        router.requires_grad_(False)\n",
             "        pass\n",
             ("tests/test_train.py::test_smoke_run_as_users_launch_it",)),
    Mutation("no cosine decay", "train.py",
             "return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))",
             "return 1.0",
             ("tests/test_train.py::test_smoke_run_as_users_launch_it",)),
    Mutation("probe dev loss over routed tokens", "train.py",
             "n_loss += len(targets)",
             "n_loss += int(mask.sum())",
             ("tests/test_probe.py",)),
    Mutation("probe forward without position_ids", "train.py",
             "logits = model(**attention.packed_inputs(config, cpu_batch, accelerator.device)).logits",
             'logits = model(input_ids=cpu_batch["input_ids"].to(accelerator.device)).logits',
             ("tests/test_probe.py",)),
    Mutation("loss scale without x num_processes", "train.py",
             "scale = accelerator.gradient_accumulation_steps * accelerator.num_processes / max(global_tokens, 1)",
             "scale = accelerator.gradient_accumulation_steps / max(global_tokens, 1)",
             ("tests/test_distributed.py::test_two_processes_give_the_gradients_of_one",)),
    Mutation("redundancy includes j = i", "routing.py",
             "others = matrix[~torch.eye(k, dtype=torch.bool)].reshape(k, k - 1)",
             "others = matrix",
             ("tests/test_routing.py",)),
    Mutation("TensorBoard keeps a killed run's steps after a resume", "lifecycle/run_folder.py",
             'tracker.init_kwargs["purge_step"] = step + 1 if step else None',
             'tracker.init_kwargs["purge_step"] = None',
             ("tests/test_trackers.py::test_tensorboard_after_a_resume_shows_each_step_once",)),
    Mutation("LoRA adapts routers", "models/lora.py",
             'return name.rsplit(".", 1)[-1].endswith("gate") or any(name == r or name.startswith(r + ".") for r in router_names)',
             "return False",
             ("tests/test_lora.py::test_targets_are_attention_and_experts_never_routers",)),
    # (Removing the save hook of checkpoint.use_model_keys is not a bug with accelerate 1.15: its safetensors save
    # already writes DDP's weights without `module.`; the hook stays for other wrappers and versions.)
    Mutation("a checkpoint is not a model (no config)", "lifecycle/checkpoint.py",
             "        model.config.save_pretrained(folder)\n",
             "        pass\n",
             ("tests/test_run_outputs.py::test_every_checkpoint_is_a_model_for_eval_and_from_pretrained",)),
    Mutation("labels on prompt tokens", "reading/data.py",
             "            if span < len(spans) and char_start >= spans[span][0]:\n",
             "            if True:\n",
             ("tests/test_data.py",)),
    # --- our own: data.py
    Mutation("position_ids run on across packed examples", "reading/data.py",
             "row_positions += range(len(example.input_ids))",
             "row_positions += range(len(row_positions), len(row_positions) + len(example.input_ids))",
             ("tests/test_data.py",)),
    Mutation("an example that does not fit is dropped", "reading/data.py",
             "                self.pending.append(key)\n",
             "                pass\n",
             ("tests/test_data.py", "tests/test_train_routing.py")),
    Mutation("a resume forgets the packing stream", "lifecycle/checkpoint.py",
             '    stream.load_state_dict(state["stream"])\n',
             "",
             ("tests/test_resume.py",)),
    # --- our own: mixture.py
    Mutation("the update forgets the smoothing c", "mixture.py",
             "return (1.0 - c) * torch.softmax(alpha, dim=0) + c / weights.numel()",
             "return torch.softmax(alpha, dim=0)",
             ("tests/test_mixture.py", "tests/test_routing.py")),
    Mutation("refloss delta with the wrong sign", "mixture.py",
             "    return dev_loss - ref_loss\n",
             "    return ref_loss - dev_loss\n",
             ("tests/test_dynamic.py::test_refloss_moves_weight_to_the_dataset_furthest_above_its_reference",)),
    Mutation("--init-weights size is uniform", "mixture.py",
             "return [sizes[name] / total for name in names]",
             "return [1 / len(names) for name in names]",
             ("tests/test_dynamic.py::test_init_weights_size_starts_in_proportion_to_the_train_sizes",)),
    Mutation("the cap's excess is not redistributed", "mixture.py",
             "final = [limit[i] if capped[i] else free * basis[i] / rest for i in range(k)]",
             "final = [limit[i] if capped[i] else basis[i] for i in range(k)]",
             ("tests/test_mixture.py", "tests/test_caps.py")),
    Mutation("anchored: no pull towards the initial weights", "mixture.py",
             "log_w = (1.0 - self.pull) * torch.log(weights / weights.sum()) + self.pull * torch.log(initial / initial.sum())",
             "log_w = torch.log(weights / weights.sum())",
             ("tests/test_mixture.py",)),
    Mutation("anchored: delta not in units of its spread", "mixture.py",
             "delta = (delta - delta.mean()) / spread if spread > 0 else torch.zeros_like(delta)",
             "delta = delta - delta.mean()",
             ("tests/test_mixture.py",)),
    # --- our own: train.py
    Mutation("loss scale without x grad-accum", "train.py",
             "scale = accelerator.gradient_accumulation_steps * accelerator.num_processes / max(global_tokens, 1)",
             "scale = accelerator.num_processes / max(global_tokens, 1)",
             ("tests/test_train.py::test_gradient_accumulation_matches_one_big_batch",)),
    Mutation("the last step is not probed", "train.py",
             "if step % args.probe_every == 0 or last_step:",
             "if step % args.probe_every == 0:",
             ("tests/test_train.py::test_smoke_run_as_users_launch_it",)),
    Mutation("the last step is not saved", "train.py",
             "if step % args.save_every == 0 or last_step or stop:",
             "if step % args.save_every == 0 or stop:",
             ("tests/test_train.py::test_smoke_run_as_users_launch_it",)),
    Mutation("--probe-source train counts prompt tokens under --probe-tokens response", "train.py",
             'ids = [torch.where(b["labels"] != data.IGNORE_INDEX, b["dataset_ids"], -1) if response_only else b["dataset_ids"]',
             'ids = [b["dataset_ids"]',
             ("tests/test_train_routing.py",)),
    # --- our own: eval/
    Mutation("generations are not cut at the stop sequences", "eval/generation.py",
             "return text[: min(ends)] if ends else text",
             "return text",
             ("tests/test_humaneval.py",)),
    Mutation("HumanEval runs the completion without its prompt", "eval/humaneval.py",
             """return f"{problem['prompt']}{completion}\\n\\n{problem['test']}""",
             """return f"{completion}\\n\\n{problem['test']}""",
             ("tests/test_humaneval.py",)),
    Mutation("MBPP runs no asserts", "eval/mbpp.py",
             "{code_of(completion)}\\n\\n{tests}\\n\"",
             "{code_of(completion)}\\n\"",
             ("tests/test_eval.py",)),
    # --- issue 14: nothing lost to a signal, a typo or a second run
    Mutation("a signal stops without saving", "train.py",
             "if step % args.save_every == 0 or last_step or stop:",
             "if step % args.save_every == 0 or last_step:",
             ("tests/test_resume.py::test_sigterm_to_train_py_and_to_the_launcher_saves_the_step_and_resumes_exactly",)),
    Mutation("ranks stop on their own signals", "lifecycle/stopping.py",
             "    if accelerator.num_processes > 1:\n",
             "    if False:\n",
             ("tests/test_distributed.py::test_sigterm_to_one_rank_stops_every_rank_after_the_same_step_and_resumes_exactly",)),
    Mutation("train.py outlives its launcher", "lifecycle/stopping.py",
             "launched = any(name in f.read() for name in LAUNCHERS)",
             "launched = False",
             ("tests/test_resume.py::test_sigterm_to_train_py_and_to_the_launcher_saves_the_step_and_resumes_exactly",)),
    Mutation("two runs share a folder", "lifecycle/run_lock.py",
             "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)",
             "fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)",
             ("tests/test_run_lock.py",)),
    Mutation("default run folders collide", "lifecycle/run_lock.py",
             "            folder.mkdir()\n",
             "            folder.mkdir(exist_ok=True)\n",
             ("tests/test_run_lock.py::test_default_run_folders_never_collide",)),
    Mutation("a truncated checkpoint verifies", "lifecycle/checkpoint.py",
             "if (found := path.stat().st_size) != size:",
             "if (found := path.stat().st_size) != size and False:",
             ("tests/test_resume_settings.py::test_a_damaged_checkpoint_is_named_and_skipped_for_the_newest_that_verifies",)),
    Mutation("a resume ignores changed settings", "lifecycle/config.py",
             "for key in compared if saved[key] != now[key]]",
             "for key in compared if key == 'model' and saved[key] != now[key]]",
             ("tests/test_resume_settings.py",)),
    Mutation("--keep-checkpoints 0 accepted", "lifecycle/config.py",
             '("keep_checkpoints", 1,',
             '("keep_checkpoints", 0,',
             ("tests/test_flags.py",)),
    Mutation("a missing model folder goes to the hub", "lifecycle/preflight.py",
             "if not path.exists() and looks_local(name):",
             "if not path.exists() and looks_local(name) and False:",
             ("tests/test_flags.py",)),
    Mutation("the sandbox keeps root", "eval/sandbox.py",
             "        os.setuid(uid)\n",
             "        pass\n",
             ("tests/test_sandbox.py",)),
    Mutation("the sandbox has no write cap", "eval/sandbox.py",
             "f\"size={settings['disk_bytes']},",
             "f\"size={settings['disk_bytes'] * 100},",
             ("tests/test_sandbox.py",)),
    Mutation("sampler ignores the weights", "sampler.py",
             "name = self.names[min(bisect_right(self._cumulative, u), len(self.names) - 1)]",
             "name = self.names[int(u / self._cumulative[-1] * len(self.names)) % len(self.names)]",
             ("tests/test_sampler.py",)),
    # --- issue 25: one data order shared out among the ranks, and elastic resume
    Mutation("every rank takes every draw of the sequence", "sampler.py",
             "        self.next += self.world\n",
             "        self.next += 1\n",
             ("tests/test_sampler.py",)),
    Mutation("each rank picks datasets with its own random stream", "sampler.py",
             'self._rng = random.Random(f"routemix/{seed}/0/choice")',
             'self._rng = random.Random(f"routemix/{seed}/{rank}/choice")',
             ("tests/test_sampler.py",)),
    Mutation("a reshard skips the draws a lagging rank had not reached", "sampler.py",
             "    still = [generator._item(j) for j in gaps] + carried[frontier:]",
             "    still = carried[frontier:]",
             ("tests/test_sampler.py",)),
    Mutation("new weights apply at each rank's own place", "train.py",
             'at=step, start=start)',
             'at=step)',
             ("tests/test_elastic.py::test_all_ranks_together_draw_each_example_once_per_pass",)),
    Mutation("an elastic resume drops the examples waiting in the packing", "lifecycle/checkpoint.py",
             '    stream = {"pending": waiting[rank::world],',
             '    stream = {"pending": [],',
             ("tests/test_elastic.py::test_reshard_state_shares_out_waiting_examples_and_sums_what_ranks_count",)),
]


def copy_repository(target: Path) -> None:
    """The tracked and untracked-but-not-ignored files of the repository (what a commit would hold)."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                            check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def run(mutation: Mutation, copy: Path, timeout: int) -> tuple[str, float]:
    """`caught`, `survived`, `stale` or `timeout`, and the seconds the tests took."""
    path = copy / mutation.file
    original = path.read_text()
    if original.count(mutation.find) != 1:
        return "stale", 0.0
    path.write_text(original.replace(mutation.find, mutation.replace))
    start = time.perf_counter()
    try:
        result = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *mutation.tests],
                                cwd=copy, capture_output=True, text=True, timeout=timeout)
        outcome = "survived" if result.returncode == 0 else "caught"
        if result.returncode not in (0, 1):  # collection errors, usage errors: the tests did not run as meant
            outcome = f"error (pytest exit {result.returncode})"
    except subprocess.TimeoutExpired:
        outcome = "timeout"
    finally:
        path.write_text(original)
    return outcome, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="run the mutations whose name contains this text")
    parser.add_argument("--list", action="store_true", help="list the mutations and the tests that must catch them")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per mutation")
    args = parser.parse_args()
    mutations = [m for m in MUTATIONS if args.only is None or args.only in m.name]
    if args.list:
        for m in mutations:
            print(f"{m.name}  [{m.file}]  <- {' '.join(m.tests)}")
        return 0
    outcomes = {}
    with tempfile.TemporaryDirectory(prefix="routemix-mutants-") as folder:
        copy = Path(folder)
        copy_repository(copy)
        for m in mutations:
            outcome, seconds = run(m, copy, args.timeout)
            outcomes[m.name] = outcome
            print(f"{outcome:9s} {seconds:6.1f} s  {m.name}  [{m.file}]", flush=True)
    bad = [name for name, outcome in outcomes.items() if outcome != "caught"]
    print(f"\n{len(outcomes) - len(bad)} of {len(outcomes)} mutations caught" + (f"; not caught: {bad}" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
