"""Operating the platform: worker heartbeats and the requeue duty, and Prometheus metrics."""
