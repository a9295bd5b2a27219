"""The one exception type that reaches the user as a message instead of a traceback."""


class UserError(Exception):
    """Bad input (config, data, paths): printed as one line by the CLI, exit code 2."""

    exit_code = 2
