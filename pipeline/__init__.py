"""Pure pipeline stages and models. No Celery, Slack or MLflow imports in this package."""
