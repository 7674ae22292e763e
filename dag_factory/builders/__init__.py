"""DAG building: ModelSpec (+ live data) -> Airflow DAG objects. Entry point: register_dags."""
