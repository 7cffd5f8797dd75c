"""The HTTP API (FastAPI): catalog, usage, health and metrics for billing systems,
inside sales and customers."""
