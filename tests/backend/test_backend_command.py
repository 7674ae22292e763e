"""`dag-factory backend`: one command starts the reference backend seeded from specs/."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import requests

from dag_factory.dev.backend.process import free_port
from tests.support import MODELS, PROJECT, ROOT


def test_backend_command_serves_one_live_model_per_spec(tmp_path):
    port = free_port()
    cmd = [sys.executable, "-m", "dag_factory.cli", "backend", "--port", str(port), "--db", str(tmp_path / "b.db"),
           "--token", "cmd-token", "--job-delay", "0.1"]
    proc = subprocess.Popen(cmd, cwd=PROJECT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        answer = requests.get(f"http://127.0.0.1:{port}/api/v1/models", timeout=5,
                              headers={"Authorization": "Bearer cmd-token"})
        assert answer.status_code == 200
        assert sorted(m["name"] for m in answer.json()["models"]) == sorted(MODELS)
        assert requests.get(f"http://127.0.0.1:{port}/api/v1/models", timeout=5).status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=15)
