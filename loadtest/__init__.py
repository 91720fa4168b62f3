"""Load tests and the benchmark suite behind docs/benchmarks.md (run with scripts/bench)."""
