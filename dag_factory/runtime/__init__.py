"""What the generated tasks run: thin Airflow edges over small pure functions.

Every callable here takes plain values (model name, gates as text, conn id) so that the DAG
structure built at parse time stays small and serialisable; live values and a run's conf are
read when a task runs (dag_factory.runtime.conf).
"""
