"""The HTTP side: /health, /metrics, /admin, the probe and the review console."""
