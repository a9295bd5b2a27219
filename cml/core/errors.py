"""The one exception type that reaches the user as a message instead of a traceback."""


class UserError(Exception):
    """Bad input (config, data, paths): printed as one line by the CLI, exit code 2."""

    exit_code = 2


class TrainingDiverged(UserError):
    """A non-finite loss or non-finite weights (`train.nonfinite`): printed as one line, exit code 3,
    so that scripts can tell a diverged run from bad input."""

    exit_code = 3
