"""What the generated tasks run: thin Airflow edges over small pure functions.

Every callable here takes plain values (model name, gates as text, conn id) so that the DAG
structure built at parse time stays small and serialisable; live values and a run's conf are
read when a task runs (dag_factory.runtime.conf).

The backend client (and with it `requests`) is imported inside the callables that call the
backend, not at module import: a worker parses the DAG file again for every task run, and the
builders import these modules, so a module-level import would cost every task run ~0.1 s
(plan_partitions, check_gates, publish and a deferred task's resume never call the backend).
"""
