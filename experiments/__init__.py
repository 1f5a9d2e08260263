"""Experiments that compare weighting strategies across seeds (`python -m experiments.compare --help`)."""
