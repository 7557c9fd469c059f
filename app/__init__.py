"""guestkit-worker platform: the v1 job protocol, its execution on Celery, and the file drop.

Nothing in this package knows what a disk image is. The Celery application lives in
``app.celery`` so that importing the protocol models does not import Celery.
"""

__version__ = "0.1.0"
