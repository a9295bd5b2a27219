"""Protocols, chosen by `scenario.protocol`: how a dataset's classes and images become steps. One
torch-free file each, declaring the protocol (`DECLARATION = Protocol(...)`, cml/registry.py)."""
