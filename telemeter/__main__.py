"""``python -m telemeter``."""

from telemeter.cli import main

raise SystemExit(main())
