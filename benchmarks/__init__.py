"""Throughput, probe cost, sampler cost and memory of routemix, side by side with its peers.

Run `python benchmarks/run.py --help`; BENCHMARKS.md explains every row.
"""
