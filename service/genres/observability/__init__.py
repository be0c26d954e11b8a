"""Metrics, health and readiness over HTTP, and tracing: adapters the composition root wires."""
