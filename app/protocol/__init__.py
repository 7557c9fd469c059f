"""The v1 job contract: the envelope's models, validation, states and their transitions, result
documents, and the generated JSON Schema. No Celery, no disks."""
