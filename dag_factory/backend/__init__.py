"""The model backend: the HTTP client every task uses, and a reference server.

- :mod:`dag_factory.backend.client` -- ``BackendClient``, the only way the
  project talks to the backend (retries, timeouts, idempotency, errors).
- :mod:`dag_factory.backend.server` -- a FastAPI + SQLite implementation of
  the contract (``backend-api.yaml``) with admin endpoints to inject faults,
  for local development, demos and tests.
- :mod:`dag_factory.backend.process` -- start and stop that server as a real
  process.

Nothing here imports Airflow at module import time.
"""
