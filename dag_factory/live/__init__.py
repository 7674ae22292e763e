"""Live model data: the backend's listing, validated, kept in one Airflow Variable.

records (validate one record) -> snapshot (what to store, pure) -> store (the Variable) ->
sync (the sync DAG's task and `dag-factory sync`).
"""
