"""``python -m api``: run the api alone (same as ``telemeter api``)."""

from telemeter.cli import main

raise SystemExit(main(["api"]))
