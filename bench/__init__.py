"""Measurements of Telemeter and of the services it runs on (make bench)."""
