"""Development tools beside the product: the reference model backend, a local Airflow stack
(`dag-factory up`), the demo, and the seeding that makes a spec's runs succeed locally.

Nothing in Airflow's parse or task path imports this package; it needs only what Airflow
already installs (FastAPI, uvicorn). Production images may leave it unused.
"""
