"""Benchmarks are scripts run by hand (see bench_plan.py), never collected as tests."""
collect_ignore_glob = ["bench_*.py"]
