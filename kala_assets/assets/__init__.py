"""KALA assets, one module per domain (data, later benchmarks, training, evaluation)."""
