"""dagrq benchmarks: run with ``python -m benchmarks <name>``; results under benchmarks/results/."""
