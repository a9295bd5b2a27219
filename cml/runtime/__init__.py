"""The machinery of a run: locking, signals, atomic writes, torchrun, checkpoints."""
