"""Waiting for a backend job (training run or deployment) without holding a worker slot.

`WaitForJobOperator` checks the job once; if it is still running it defers to
`BackendJobTrigger`, which polls from the triggerer. With `deferrable=False` (no triggerer in
the deployment) it polls in the worker instead, holding the slot for the whole wait.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterator

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException
from airflow.triggers.base import BaseTrigger, TriggerEvent

from dag_factory.settings import BACKEND_CONN_ID

if TYPE_CHECKING:
    from dag_factory.client import BackendClient

TERMINAL = frozenset({"succeeded", "failed", "rolled_back"})
_GETTERS = {"training": "get_training_run", "deployment": "get_deployment"}


class JobFailed(Exception):
    """The backend finished the job, and not successfully; retrying the wait would not help."""


def poll_delays(poll_interval: float, first: float = 1.0) -> Iterator[float]:
    """1, 2, 4, ... seconds up to `poll_interval`: short jobs are seen finished within
    seconds, long ones cost one request per interval."""
    delay = min(first, poll_interval)
    while True:
        yield delay
        delay = min(delay * 2, poll_interval)


def fetch_job(client: BackendClient, kind: str, job_id: str) -> dict[str, Any]:
    return getattr(client, _GETTERS[kind])(job_id)


def job_outcome(kind: str, job: dict[str, Any]) -> dict[str, Any]:
    """The job if it succeeded; JobFailed naming the job and the backend's reason otherwise."""
    if job.get("status") == "succeeded":
        return job
    reason = job.get("error") or "no reason given"
    raise JobFailed(f"{kind} job {job.get('id')} ended {job.get('status')}: {reason}")


class BackendJobTrigger(BaseTrigger):
    """Polls one job in the triggerer until it is finished; transient errors keep polling
    (the operator's defer timeout bounds the wait), permanent ones end it."""

    def __init__(self, kind: str, job_id: str, conn_id: str = BACKEND_CONN_ID, poll_interval: float = 30.0):
        super().__init__()
        self.kind, self.job_id, self.conn_id, self.poll_interval = kind, job_id, conn_id, poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"kind": self.kind, "job_id": self.job_id, "conn_id": self.conn_id,
                 "poll_interval": self.poll_interval})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow.sdk import BaseHook

        from dag_factory.client import BackendClient, BackendError

        conn = await BaseHook.aget_connection(self.conn_id)
        client = BackendClient.from_airflow_connection(conn)
        delays = poll_delays(self.poll_interval)
        try:
            while True:
                try:
                    job = await asyncio.to_thread(fetch_job, client, self.kind, self.job_id)
                except BackendError as exc:
                    if not exc.retryable:
                        yield TriggerEvent({"error": str(exc)})
                        return
                    self.log.warning("%s; polling again", exc)
                else:
                    if job.get("status") in TERMINAL:
                        yield TriggerEvent({"job": job})
                        return
                    self.log.info("%s job %s is %s", self.kind, self.job_id, job.get("status"))
                await asyncio.sleep(next(delays))
        finally:
            client.close()


class WaitForJobOperator(BaseOperator):
    """Wait for the job started by `job_task_id` (its XCom is the job) to finish.

    Returns the finished job (status, model_version, metrics) as XCom. A failed job fails the
    task without retries: the backend already decided.
    """

    ui_color = "#e8f0fe"

    def __init__(self, *, kind: str, job_task_id: str, conn_id: str = BACKEND_CONN_ID,
                 poll_interval: timedelta = timedelta(seconds=30), timeout: timedelta = timedelta(hours=2),
                 deferrable: bool = True, **kwargs: Any):
        super().__init__(**kwargs)
        if kind not in _GETTERS:
            raise ValueError(f"kind must be one of {sorted(_GETTERS)}")
        self.kind, self.job_task_id, self.conn_id = kind, job_task_id, conn_id
        self.poll_interval, self.timeout, self.deferrable = poll_interval, timeout, deferrable

    def execute(self, context: Any) -> dict[str, Any]:
        from dag_factory.client import BackendClient  # here, not at import: see dag_factory.runtime

        started = context["ti"].xcom_pull(task_ids=self.job_task_id)
        if not isinstance(started, dict) or not started.get("id"):
            raise ValueError(f"{self.job_task_id} returned no {self.kind} job: {started!r}")
        with BackendClient.from_connection(self.conn_id) as client:
            job = fetch_job(client, self.kind, started["id"])
            if job.get("status") in TERMINAL:
                return self._finish(job)
            if self.deferrable:
                self.defer(
                    trigger=BackendJobTrigger(self.kind, started["id"], self.conn_id,
                                              self.poll_interval.total_seconds()),
                    method_name="execute_complete",
                    timeout=self.timeout,
                )
            return self._poll_here(client, started["id"])

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        if "error" in event:
            from dag_factory.client import BackendError

            raise BackendError(f"poll {self.kind} job", None, event["error"])
        return self._finish(event["job"])

    def _poll_here(self, client: BackendClient, job_id: str) -> dict[str, Any]:
        from dag_factory.client import BackendError

        deadline = time.monotonic() + self.timeout.total_seconds()
        delays = poll_delays(self.poll_interval.total_seconds())
        while time.monotonic() < deadline:
            time.sleep(min(next(delays), max(0.0, deadline - time.monotonic())))
            try:
                job = fetch_job(client, self.kind, job_id)
            except BackendError as exc:
                if not exc.retryable:
                    raise
                self.log.warning("%s; polling again", exc)  # like the trigger: outages are waited out
                continue
            if job.get("status") in TERMINAL:
                return self._finish(job)
        raise TimeoutError(f"{self.kind} job {job_id} did not finish within {self.timeout}")

    def _finish(self, job: dict[str, Any]) -> dict[str, Any]:
        try:
            return job_outcome(self.kind, job)
        except JobFailed as exc:
            raise AirflowFailException(str(exc)) from None
