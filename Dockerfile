# dag_factory on the official Airflow image: the package installed (non-editable, pinned by
# constraints.txt; it ships its JSON Schemas) and dags/, specs/ under /opt/airflow. For astro-deploy-style or
# Helm deployments; see docs/deploy.md.
#
#   docker build -t REGISTRY/dag-factory:TAG . && docker push REGISTRY/dag-factory:TAG
#
# The install steps live in scripts/install-image, which tests/deploy/test_image_install.py
# runs too (in a fresh virtualenv; no Docker engine needed). Keep this FROM on the Airflow
# version that constraints.txt pins: that test checks it.
FROM apache/airflow:3.3.2-python3.11

USER airflow

# Where the DAG files find the specs. The dags folder is Airflow's own setting (default
# /opt/airflow/dags): not set here, so Helm's git-sync can move it.
ENV DAG_FACTORY_SPECS=/opt/airflow/specs \
    AIRFLOW__CORE__LOAD_EXAMPLES=false

# Only what the install needs (.dockerignore keeps the rest out of the build context).
COPY --chown=airflow:0 pyproject.toml setup.cfg README.md LICENSE constraints.txt /tmp/dag-factory/
COPY --chown=airflow:0 scripts/install-image /tmp/dag-factory/scripts/
COPY --chown=airflow:0 dag_factory /tmp/dag-factory/dag_factory/
COPY --chown=airflow:0 dags /tmp/dag-factory/dags/
COPY --chown=airflow:0 specs /tmp/dag-factory/specs/

# pip install --no-cache-dir -c constraints.txt "apache-airflow==${AIRFLOW_VERSION}" ".[celery]",
# pip check, then dags/ specs/ into /opt/airflow (group-writable, as the image's own).
RUN bash /tmp/dag-factory/scripts/install-image python /opt/airflow \
    && rm -rf /tmp/dag-factory
