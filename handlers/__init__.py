"""Operation handlers and the guest-image engine they share. Nothing here imports Celery."""
