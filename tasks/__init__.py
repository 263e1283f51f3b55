"""Celery tasks: ``celery -A tasks worker``. Importing this package loads only the app (light);
the task modules are in the app's ``include`` list and are imported by workers."""

from tasks.app import app

__all__ = ["app"]
