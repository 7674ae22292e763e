"""Development tools beside the product: the reference model backend, a local Airflow stack
(`dag-factory up`), the demo, and the seeding that makes a spec's runs succeed locally.

Nothing in Airflow's parse or task path imports this package (tests/test_layout.py checks it).
Its dependencies are the `dev` extra (`pip install dag-factory-ml[dev]`: FastAPI and uvicorn,
which Airflow's api-server already brings); production images may leave it unused.
"""
