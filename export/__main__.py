"""`python -m export RUN_DIR --repo model_repository/` (see export.cli)."""

from export.cli import main

raise SystemExit(main())
