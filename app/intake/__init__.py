"""How jobs arrive: the Python API, the admission and publishing they share (``submission``), the
file-drop bridge and the bootstep that runs it in a worker, and the ``celery`` sub-commands."""
