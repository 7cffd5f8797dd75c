"""``python -m aggregator``: run the aggregator alone (same as ``telemeter aggregator``)."""

from telemeter.cli import main

raise SystemExit(main(["aggregator"]))
