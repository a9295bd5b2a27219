"""What every other part builds on: the user-facing error and its one hint, YAML with limits,
option schemas and the component registries. Imports nothing of cml above it."""
