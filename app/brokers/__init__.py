"""kombu transports: the embedded file broker (``embedded://``) and kombu's Redis transport with one
client per channel (``redis://``); importing ``app.celery`` registers both."""
