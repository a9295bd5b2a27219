"""Class-incremental multi-label scenarios as Avalanche benchmarks."""
