"""Simulated devices for demos and load tests."""
