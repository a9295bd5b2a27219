from cml.commands.cli import main

raise SystemExit(main())
