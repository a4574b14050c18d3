"""The benchmark workloads, runnable with one command: `python -m benchmarks all --db sqlite`.

Each row runs in a child process of its own (so its peak RSS is its own and no state leaks
between rows), repeats `--repeat` times on a fresh store, and reports the median with min-max.
"""
