from hir.cli import main

raise SystemExit(main())
