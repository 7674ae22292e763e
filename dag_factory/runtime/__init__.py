"""What the generated tasks run: thin Airflow edges over small pure functions.

Every callable here takes plain values (model name, gates as text, conn id) so that the DAG
structure built at parse time stays small and serialisable, and live values arrive as params.
"""

BACKEND_CONN_ID = "model_backend"
