"""The plugin's FastAPI app, mounted by the api-server at /dag-factory:

    GET /dag-factory/models              Models page (HTML)       ?status= &owner= &tag= &problem=yes|no &q= &sort=
    GET /dag-factory/api/models          the same rows as JSON    (same parameters)
    GET /dag-factory/model?dag_id=<id>   Model tab (HTML), also ?model=<name>
    GET /dag-factory/api/models/<name>   one model's detail as JSON

Plugin apps are not protected by Airflow on their own: every route depends on Airflow's
`get_user` (the UI's `_token` cookie or an `Authorization: Bearer` JWT) and asks the auth
manager for read access to DAGs and to the live-data Variable. Anonymous: 401 for JSON, a
redirect to the login page for HTML; never data. Routes are sync: FastAPI runs them in its
thread pool, so the DB reads do not block the api-server's event loop.
"""

from __future__ import annotations

from typing import Annotated, Any, Iterable

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from dag_factory.live.status import filter_rows
from dag_factory.plugin import data, pages
from dag_factory.settings import LIVE_VARIABLE

FILTERS = ("status", "owner", "tag", "problem", "q", "sort")


class _LoginFirst(Exception):
    """An anonymous browser asked for a page: send it to the login page instead."""


async def _user(request: Request, bearer: Any = None) -> Any:
    from airflow.api_fastapi.core_api.security import get_user

    return await get_user(request, None, bearer)


async def api_user(request: Request) -> Any:
    from airflow.api_fastapi.core_api.security import bearer_scheme

    return await _user(request, await bearer_scheme(request))


async def page_user(request: Request) -> Any:
    try:
        return await api_user(request)
    except HTTPException as exc:
        if exc.status_code == status.HTTP_401_UNAUTHORIZED:
            raise _LoginFirst() from None
        raise


def _authorize(user: Any, dag_ids: Iterable[str] = ()) -> None:
    """Read access to DAGs (to each of `dag_ids`, with its team, as Airflow's own endpoints ask)
    and to the live-data Variable, or 403."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails, VariableDetails
    from airflow.models.dag import DagModel

    manager = get_auth_manager()
    ids = sorted(set(dag_ids))
    teams = DagModel.get_dag_id_to_team_name_mapping(ids) if ids else {}
    dags = all(manager.is_authorized_dag(method="GET", user=user, details=DagDetails(id=d, team_name=teams.get(d)))
               for d in ids) if ids else manager.is_authorized_dag(method="GET", user=user)
    variable = manager.is_authorized_variable(method="GET", user=user, details=VariableDetails(key=LIVE_VARIABLE))
    if not (dags and variable):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Forbidden: needs read access to the model's DAGs and to "
                                                       f"the Variable {LIVE_VARIABLE}")


def _visible(user: Any, view: dict[str, Any]) -> dict[str, Any]:
    """The view with only the rows whose DAGs this user may read (Airflow's list endpoints filter
    the same way); rows without DAGs (a live model naming no spec) stay."""
    from airflow.api_fastapi.app import get_auth_manager

    allowed = get_auth_manager().get_authorized_dag_ids(user=user, method="GET")
    return {**view, "models": [r for r in view["models"] if set(r.get("dag_ids") or ()) <= allowed]}


ApiUser = Annotated[Any, Depends(api_user)]
PageUser = Annotated[Any, Depends(page_user)]


def _query(request: Request) -> dict[str, str]:
    return {k: request.query_params[k] for k in FILTERS if request.query_params.get(k)}


def _rows(view: dict[str, Any], query: dict[str, str]) -> list:
    return filter_rows(view["models"], status=query.get("status", ""), owner=query.get("owner", ""),
                       tag=query.get("tag", ""), problem=query.get("problem", ""), text=query.get("q", ""),
                       sort=query.get("sort", "model"))


def create_app() -> FastAPI:
    app = FastAPI(title="dag_factory models", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(_LoginFirst)
    async def _login(request: Request, exc: _LoginFirst) -> RedirectResponse:
        from airflow.api_fastapi.app import get_auth_manager

        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(get_auth_manager().get_url_login(next_url=here), status.HTTP_302_FOUND)

    @app.get("/models", response_class=HTMLResponse)
    def models_page(request: Request, user: PageUser) -> HTMLResponse:
        _authorize(user)
        view = _visible(user, data.fleet())
        query = _query(request)
        return HTMLResponse(pages.models_page(view, _rows(view, query), query))

    @app.get("/api/models")
    def models_json(request: Request, user: ApiUser) -> JSONResponse:
        _authorize(user)
        view = _visible(user, data.fleet())
        return JSONResponse({**view, "models": _rows(view, _query(request)), "total": len(view["models"])})

    @app.get("/model", response_class=HTMLResponse)
    def model_page(user: PageUser, dag_id: str = "", model: str = "") -> HTMLResponse:
        name = model or data.model_for_dag(dag_id)
        if dag_id and model and data.model_for_dag(dag_id) != model:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, f"{dag_id} is not a DAG of model {model}")
        _authorize(user, [dag_id] if dag_id else data.model_dag_ids(name or ""))
        if not name:
            return HTMLResponse(pages.message_page("Not a dag_factory DAG", f"{dag_id} was not generated from a "
                                                   "spec: there is no model to show."))
        detail = data.model_detail(name)
        if detail is None:
            return HTMLResponse(pages.message_page(f"No model {name}", "neither a spec nor the live data knows "
                                                   "this model"), status_code=404)
        return HTMLResponse(pages.model_page(detail))

    @app.get("/api/models/{name}")
    def model_json(name: str, user: ApiUser) -> JSONResponse:
        _authorize(user, data.model_dag_ids(name))
        detail = data.model_detail(name)
        if detail is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no model {name}")
        return JSONResponse(detail)

    return app
