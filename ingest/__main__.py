"""``python -m ingest``: run the ingest alone (same as ``telemeter bridge``)."""

from telemeter.cli import main

raise SystemExit(main(["bridge"]))
