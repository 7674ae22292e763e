"""The dag_factory Airflow plugin: a **Models** page in the navigation, a **Model** tab on every
DAG, and a JSON endpoint with the same data (see docs/ui.md).

Registered through the `airflow.plugins` entry point (setup.cfg), so installing the package is
enough. Every Airflow process loads plugins (a task run too, for macros), so this module stays
cheap to import: the FastAPI app (and FastAPI itself) is built only when the api-server asks.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/dag-factory"  # where the api-server mounts the app
MODELS_ROUTE = "dag-factory-models"  # the UI's /plugin/<route> pages
MODEL_TAB_ROUTE = "dag-factory-model"


class DagFactoryPlugin(AirflowPlugin):
    """Models page (nav), Model tab (every DAG), JSON endpoint; all behind Airflow's auth manager."""

    name = "dag_factory"
    # hrefs are relative (no leading slash): they then work under an [api] base_url prefix too
    external_views = [
        {"name": "Models", "href": f"{URL_PREFIX.lstrip('/')}/models", "destination": "nav",
         "url_route": MODELS_ROUTE},
        {"name": "Model", "href": f"{URL_PREFIX.lstrip('/')}/model?dag_id={{DAG_ID}}", "destination": "dag",
         "url_route": MODEL_TAB_ROUTE},
    ]

    @cached_property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]
        from dag_factory.plugin.app import create_app

        return [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "dag_factory models"}]
