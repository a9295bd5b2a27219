from cml.cli import main

raise SystemExit(main())
