"""Telemeter's runtime shell: settings, logging, the shared Kafka adapter, the
all-in-one stack and the ``telemeter`` command line."""

__version__ = "0.1.0"
