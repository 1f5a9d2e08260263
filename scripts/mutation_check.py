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
             "delta = centred / spread if spread > 0 else torch.zeros_like(delta)",
             "delta = centred",
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
    # --- issue 22: the default must not pay for noise
    Mutation("the default ignores the noise of delta", "mixture.py",
             "return torch.where(band > 0, (1.0 - ratio.pow(2)).clamp(min=0.0), torch.ones_like(centred))",
             "return torch.ones_like(centred)",
             ("tests/test_delta_noise.py::test_default_leaves_a_mix_with_nothing_to_find_near_its_initial_weights",)),
    Mutation("the probe's noise never reaches the rule", "train.py",
             "drawn_so_far(step, sampler, stream, args, accelerator), delta_se)",
             "drawn_so_far(step, sampler, stream, args, accelerator), None)",
             ("tests/test_delta_noise.py::test_train_py_keeps_a_mix_with_nothing_to_find_at_uniform",)),
    # --- issue 22: a task metric beside dev loss
    Mutation("the first answer marker counts, not the last", "eval/accuracy.py",
             "found = [(lowered.rfind(marker), marker) for marker in MARKERS]",
             "found = [(lowered.find(marker), marker) for marker in MARKERS]",
             ("tests/test_accuracy.py",)),
    Mutation("math answers match in any order", "eval/accuracy.py",
             "return bool(expected) and numbers(answer) == expected",
             "return bool(expected) and sorted(numbers(answer)) == sorted(expected)",
             ("tests/test_accuracy.py",)),
    # --- issue 23: a run behaves as a person expects
    Mutation("Ctrl-C under the launcher counts its relay as a second signal", "lifecycle/stopping.py",
             'if _state["signal"] is not None and relayed(signum):',
             'if _state["signal"] is not None and False:',
             ("tests/test_resume.py::test_ctrl_c_under_the_launcher_saves_the_step_and_the_readme_resume_line_finishes_the_run_as_started",)),
    Mutation("the launcher's SIGTERM after Ctrl-C counts as a second signal", "lifecycle/stopping.py",
             'if os.getppid() != launcher or (_state["signal"], signum) == (signal.SIGINT, signal.SIGTERM):',
             "if os.getppid() != launcher:",
             ("tests/test_resume.py::test_what_a_launcher_sends_on_after_ctrl_c_is_the_same_event_and_a_second_ctrl_c_stops_at_once",)),
    Mutation("a second Ctrl-C under a launcher is ignored", "lifecycle/stopping.py",
             "return signum == _state[\"signal\"] and time.monotonic() - _state[\"since\"] < RELAY_SECONDS",
             "return signum == _state[\"signal\"]",
             ("tests/test_resume.py::test_what_a_launcher_sends_on_after_ctrl_c_is_the_same_event_and_a_second_ctrl_c_stops_at_once",)),
    Mutation("a resume takes the defaults for the flags left out", "lifecycle/config.py",
             "    path = started_config(args)\n",
             "    path = None\n",
             ("tests/test_first_use.py::test_a_resume_takes_every_setting_left_out_from_the_run_and_prints_those_given",)),
    Mutation("model defaults follow the word tiny", "lifecycle/config.py",
             "elif parameters is not None and parameters < SMALL_MODEL_PARAMETERS:",
             'elif args.model == "tiny":',
             ("tests/test_first_use.py::test_a_model_folder_gets_the_defaults_of_its_size_whatever_its_name",)),
    Mutation("a routemix model's own settings are ignored", "lifecycle/config.py",
             "if recorded is not None and all(",
             "if False and all(",
             ("tests/test_first_use.py::test_the_output_of_a_tiny_run_gets_the_defaults_its_run_used_and_says_so",)),
    Mutation("an evaluation tool imports its extra when it loads", "eval/harness.py",
             "from eval import extras, mbpp\n",
             "from lm_eval import simple_evaluate  # noqa: F401\nfrom eval import extras, mbpp\n",
             ("tests/test_first_use.py::test_every_evaluation_tool_answers_help_without_its_extras",)),
    Mutation("a missing extra is a bare ModuleNotFoundError", "eval/extras.py",
             "        raise SystemExit(f\"{tool} needs",
             "        raise\n        raise SystemExit(f\"{tool} needs",
             ("tests/test_first_use.py::test_a_missing_evaluation_extra_is_named_with_the_pip_command",)),
    Mutation("a run folder is loaded as a model folder", "eval/generation.py",
             'if not any((path / name).exists() for name in ("final", "checkpoints", "run.lock")):',
             "if True:",
             ("tests/test_first_use.py::test_a_run_folder_is_evaluated_through_its_final_model",
              "tests/test_first_use.py::test_an_unfinished_run_folder_gives_its_newest_checkpoint_and_an_empty_one_says_what_to_pass")),
    Mutation("an unreachable hub is retried", "lifecycle/preflight.py",
             "        check_hub_reachable(name)\n",
             "        pass\n",
             ("tests/test_first_use.py::test_a_hub_id_that_cannot_be_reached_fails_in_seconds_with_the_offline_hint",)),
    Mutation("the lock is claimed after the data is read", "train.py",
             "    out, lock = run_lock.claim(accelerator, args.out)  # one run per folder: held until the run ends\n",
             "    read_data(args, load_tokenizer(args.model, chat_template=args.chat_template), is_main)\n"
             "    out, lock = run_lock.claim(accelerator, args.out)  # one run per folder: held until the run ends\n",
             ("tests/test_first_use.py::test_a_missing_model_folder_and_a_busy_run_folder_answer_before_the_data_is_read",)),
    Mutation("a refused run keeps its lock", "lifecycle/run_lock.py",
             "            self.release()\n            folder = self.path.parent\n",
             "            folder = self.path.parent\n",
             ("tests/test_first_use.py::test_a_refused_run_releases_its_lock",)),
    Mutation("cycle runs with weights that cannot rotate", "lifecycle/config.py",
             'if args.mix == "cycle" and max(weights)',
             'if False and max(weights)',
             ("tests/test_first_use.py::test_cycle_with_weights_that_cannot_rotate_is_refused_and_leaves_nothing_behind",)),
    Mutation("the embeddings command keeps the paper's rule as its default", "extras/embeddings.py",
             '    update: Literal["anchored", "paper"] = "anchored"',
             '    update: Literal["anchored", "paper"] = "paper"',
             ("tests/test_embeddings.py::test_the_command_and_init_weights_embedding_give_the_same_weights_under_the_defaults",)),
    Mutation("the plots do not say which step", "outputs/plots.py",
             'figure.suptitle("routing" + ("" if step is None else f" at step {step}"), fontsize="small")',
             'figure.suptitle("routing", fontsize="small")',
             ("tests/test_first_use.py::test_the_plots_say_which_step_they_show",)),
    Mutation("the model card links routemix to the paper", "outputs/model_card.py",
             '", instruction-tuned with routemix (an open-source',
             '", instruction-tuned with [routemix](https://arxiv.org/abs/2406.11256) (an open-source',
             ("tests/test_first_use.py::test_the_model_card_links_the_method_to_the_paper_and_not_routemix",)),
    Mutation("--help breaks lines inside phrases", "lifecycle/config.py",
             'tyro.conf.arg(help=paragraphs(docs.get(f.name, "")))',
             'tyro.conf.arg(help=docs.get(f.name, ""))',
             ("tests/test_first_use.py::test_help_keeps_each_flags_text_in_one_paragraph",)),
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
             'at=step, start=furthest)',
             'at=step)',
             ("tests/test_elastic.py::test_all_ranks_together_draw_each_example_once_per_pass",)),
    Mutation("an elastic resume drops the examples waiting in the packing", "lifecycle/checkpoint.py",
             '    stream = {"pending": waiting[rank::world],',
             '    stream = {"pending": [],',
             ("tests/test_elastic.py::test_reshard_state_shares_out_waiting_examples_and_sums_what_ranks_count",)),
    # --- issue 24: where train.py wires tested pieces together (each once passed the suite)
    Mutation("the loop's balance loss counts padding", "train.py",
             'balance.on(cpu_batch["token_mask"])',
             'balance.on(torch.ones_like(cpu_batch["token_mask"]))',
             ("tests/test_wiring.py::test_balance_loss_as_the_loop_calls_it_counts_real_tokens_only",)),
    Mutation("gradients clipped at twice --max-grad-norm", "train.py",
             "accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)",
             "accelerator.clip_grad_norm_(model.parameters(), 2 * args.max_grad_norm)",
             ("tests/test_wiring.py::test_every_step_applies_a_gradient_clipped_to_exactly_max_grad_norm",)),
    Mutation("warmup starts at LR 0 and lasts a step longer", "train.py",
             "return (step + 1) / warmup_steps",
             "return step / (warmup_steps + 1)",
             ("tests/test_wiring.py::test_the_first_step_uses_the_warmup_lr_and_warmup_lasts_its_steps",)),
    Mutation("mixture-file weights taken in file order", "reading/sources.py",
             "return [loaded.weights[name] / total for name in names]",
             "return [weight / total for weight in loaded.weights.values()]",
             ("tests/test_sources.py::test_a_mixture_file_through_train_with_its_initial_weights",)),
    Mutation("--probe-source train: a dataset not drawn yet gets the largest delta", "train.py",
             "delta[unseen] = delta[[i for i in range(len(delta)) if i not in unseen]].mean()",
             "delta[unseen] = delta.max()",
             ("tests/test_wiring.py::test_a_dataset_not_drawn_yet_gets_the_mean_delta_of_the_others_through_train",)),
    Mutation("--delta-ema's two weights swapped", "mixture.py",
             "(self.ema * torch.tensor(before, dtype=torch.float64) + (1.0 - self.ema) * delta)",
             "((1.0 - self.ema) * torch.tensor(before, dtype=torch.float64) + self.ema * delta)",
             ("tests/test_mixture.py::test_delta_ema_away_from_one_half_hand_computed",)),
    Mutation("every rank trains on the same examples (through train.py)", "sampler.py",
             "        self.next += self.world\n",
             "        self.next += 1\n",
             ("tests/test_wiring.py::test_two_ranks_train_on_different_examples",)),
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
        # one process (-n 0): under pytest-xdist (pytest.ini) a failure stopped by -x exits 2, not 1
        result = subprocess.run([sys.executable, "-m", "pytest", "-n", "0", "-x", "-q", "-p", "no:cacheprovider",
                                 *mutation.tests],
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
