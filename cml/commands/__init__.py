"""The commands: run, plan, compare and the command line that dispatches them."""
