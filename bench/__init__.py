"""Benchmark harness of authsvc: `python -m bench.run` (or `make bench`); see bench/README.md."""
