"""`python -m cml`. Python's `-m` puts the working directory first on sys.path; it is taken off
before anything else is imported, so that a config's `imports:` finds modules only on PYTHONPATH
and in the installed packages: a file that happens to lie beside a config (or wherever the
command is started) is never run by naming it there (docs/reliability.md, "Config")."""

import os
import sys

if not sys.flags.safe_path and sys.path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]

from cml.commands.cli import main  # noqa: E402

raise SystemExit(main())
