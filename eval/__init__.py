"""Evaluation of trained checkpoints: dev loss, HumanEval, lm-evaluation-harness tasks, MT-Bench answers,
and one table that collects them (`python -m eval.show`). Every tool writes the result JSON of `eval.results`."""
