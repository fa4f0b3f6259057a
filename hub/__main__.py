from onceonly.hub.cli import main

raise SystemExit(main())
