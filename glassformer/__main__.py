from glassformer.cli import main

raise SystemExit(main())
