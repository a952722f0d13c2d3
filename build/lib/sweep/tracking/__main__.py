from sweep.tracking.replay import main

raise SystemExit(main())
