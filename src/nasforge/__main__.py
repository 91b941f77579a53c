from nasforge.cli import main

raise SystemExit(main())
