"""The Airflow DAG that keeps dag_factory's live model data in step with the backend.

Its own file, so that a broken spec can never stop it.
"""

from pathlib import Path

from dag_factory import build_sync_dag

dag_factory_backend_sync = build_sync_dag(dags_dir=str(Path(__file__).parent))
