"""Issue 12 in a real browser, on the e2e stack that is already up (sqlite profile), at the moment
a spec is invalid: headless Chromium (Debian's chromium + chromium-driver, `scripts/browser`)
driven by Selenium logs in through Airflow's login form, opens the **Models** page from the
navigation, finds the example models in the states the sync and the training run left them,
sees the broken spec listed with its file:line:column, filters, follows a link into the Airflow
UI, and opens the **Model** tab of a DAG. Anonymous requests get 401 / the login page.

With DAG_FACTORY_SCREENSHOTS=<folder> it saves ui-models.png and ui-model-tab.png there.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

import requests

from dag_factory.dev.stack import ADMIN_USER, Stack

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# the flags of scripts/screenshot.py (plus a fresh profile per run)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars"]
WIDTH, HEIGHT = 1600, 1000
WAIT = 60.0
SCREENSHOTS_ENV = "DAG_FACTORY_SCREENSHOTS"


def _wait(what: str, check: Callable[[], Any], timeout: float = WAIT, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if value := check():
                return value
        except Exception as exc:  # noqa: BLE001 - the page is re-rendering: try again
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}" + (f" (last error: {last!r})" if last else ""))


def _browser(profile: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    assert not missing, f"{missing} not installed: run scripts/browser (apt-get install chromium chromium-driver)"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + [f"--window-size={WIDTH},{HEIGHT}", f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})
    return driver


def _text(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def _login(driver: Any, stack: Stack) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{stack.base_url}/auth/login?next=%2Fdags")
    _wait("the login form", lambda: driver.find_elements(By.NAME, "username"))[0].send_keys(ADMIN_USER)
    driver.find_element(By.NAME, "password").send_keys(stack.password)
    driver.find_element(By.XPATH, "//button[@type='submit' or normalize-space()='Sign in']").click()
    _wait("the login to reach /dags", lambda: urlparse(driver.current_url).path.rstrip("/").endswith("/dags")
          and driver.get_cookie("_token"))


def _enter_view(driver: Any, title: str) -> None:
    """Switch into the plugin's iframe (the UI titles it with the view's name)."""
    from selenium.webdriver.common.by import By

    driver.switch_to.default_content()
    frame = _wait(f"the {title} iframe", lambda: driver.find_elements(By.CSS_SELECTOR, f"iframe[title='{title}']"))[0]
    driver.switch_to.frame(frame)


def _shot(driver: Any, name: str, say: Callable[[str], None]) -> None:
    folder = os.environ.get(SCREENSHOTS_ENV)
    if not folder:
        return
    out = Path(folder).resolve() / name
    out.parent.mkdir(parents=True, exist_ok=True)
    driver.switch_to.default_content()
    time.sleep(1)  # the UI's own panels load in separate requests
    assert driver.save_screenshot(str(out)), out
    say(f"browser: wrote {out} ({out.stat().st_size // 1024} KB)")


def _anonymous_gets_nothing(stack: Stack) -> None:
    api = requests.get(f"{stack.base_url}/dag-factory/api/models", timeout=30, allow_redirects=False)
    assert api.status_code == 401 and "churn_predictor" not in api.text, (api.status_code, api.text[:300])
    page = requests.get(f"{stack.base_url}/dag-factory/models", timeout=30, allow_redirects=False)
    assert page.status_code == 302 and "/auth/login" in page.headers["location"], page.status_code
    assert "churn_predictor" not in page.text


def run_browser_scenario(stack: Stack, profile: str, say: Callable[[str], None]) -> dict[str, float]:
    """Call while a spec of the stack (demand_forecast) is invalid, after the sync, a training
    run with its deployment and a streaming run; returns {"browser": seconds}. Only for the
    sqlite profile (the celery profile has its own faults to run in its time budget)."""
    if profile != "sqlite":
        return {}
    from selenium.webdriver.common.by import By

    t0 = time.monotonic()
    _anonymous_gets_nothing(stack)
    data = stack.wait_for(lambda: _models_json(stack), 90, "the Models JSON to show the invalid spec")
    rows = {r["model"]: r for r in data["models"]}
    tmp = Path(tempfile.mkdtemp(prefix="dag_factory_browser_"))
    driver = _browser(tmp / "profile")
    try:
        _login(driver, stack)
        # the navigation has the Models entry; it opens the plugin page
        nav = _wait("the Models entry in the navigation", lambda: [
            a for a in driver.find_elements(By.CSS_SELECTOR, "a[href$='/plugin/dag-factory-models']")])
        nav[0].click()
        # (once the page loads, the UI appends the iframe's own path: /plugin/dag-factory-models/dag-factory/models)
        _wait("the Models page", lambda: "/plugin/dag-factory-models" in urlparse(driver.current_url).path)
        _enter_view(driver, "Models")
        table = _wait("the models table", lambda: "churn_predictor" in _text(driver) and _text(driver))
        # the broken spec on top, located
        invalid = driver.find_element(By.CSS_SELECTOR, "div.invalid").text
        assert re.search(r"specs/demand_forecast\.yaml:\d+:\d+", invalid) and "schedual" in invalid, invalid
        # the example models in their states after the sync and the training run
        states = {r.get_attribute("data-model"): r.get_attribute("data-status")
                  for r in driver.find_elements(By.CSS_SELECTOR, "table#models tbody tr")}
        assert states["churn_predictor"] == "active" and states["churn_eu"] == "paused", states
        assert states["fraud_scorer"] == "active", states
        churn = driver.find_element(By.CSS_SELECTOR, "tr[data-model='churn_predictor']").text
        assert "success" in churn and "auc >= 0.78" in churn and "✓" in churn, churn
        targets = {t["name"]: t["version"] for t in rows["churn_predictor"]["deployment"]["targets"]}
        assert targets["staging"] and targets["production"], targets  # (a newer deployment may be under way)
        # the deployed version per target (a deployment may finish between the JSON and the page)
        assert re.search(r"staging: v\d+", churn) and re.search(r"production: v\d+", churn), churn
        assert "every 10m" in churn, churn  # the stream's last committed batch, against its interval
        # each entry file's last parse against the dag-processor's timeout (issue 14), per bundle
        parses = {r.get_attribute("data-file"): r.text
                  for r in driver.find_elements(By.CSS_SELECTOR, "table#parse-headroom tbody tr")}
        [entry] = [name for name in parses if name.endswith(":model_dags.py") and name.startswith("dags-folder")]
        assert re.search(r"\d+ models, \d+ DAGs", parses[entry]), parses
        assert re.search(r"\d+\.\d s of \d+ s \(\d+%\)", parses[entry]), parses
        say(f"browser: Models page ok ({len(states)} models; {table.count('INVALID') or 1} invalid spec shown)")
        _shot(driver, "ui-models.png", say)

        # filter: only paused models
        _enter_view(driver, "Models")
        from selenium.webdriver.support.ui import Select

        Select(driver.find_element(By.NAME, "status")).select_by_value("paused")  # submits the form
        _wait("the status filter", lambda: [r.get_attribute("data-model") for r in
                                            driver.find_elements(By.CSS_SELECTOR, "table#models tbody tr")]
              == ["churn_eu"])
        # a link moves the Airflow UI itself (not the iframe) to the DAG
        driver.find_element(By.CSS_SELECTOR, "tr[data-model='churn_eu'] a[href$='dags/churn_eu__train']").click()
        driver.switch_to.default_content()
        _wait("the UI to show churn_eu__train", lambda: urlparse(driver.current_url).path.endswith(
            "/dags/churn_eu__train"))

        # the Model tab of a DAG
        driver.get(f"{stack.base_url}/dags/churn_predictor__train/plugin/dag-factory-model")
        _enter_view(driver, "Model")
        _wait("the Model tab", lambda: "Resolved spec" in _text(driver))
        written = driver.find_element(By.ID, "spec-written").text
        resolved = driver.find_element(By.ID, "spec-resolved").text
        live = driver.find_element(By.ID, "live").text
        assert "model: churn_predictor" in written and "schedule: null" in written, written[:300]
        assert "poll_interval" in resolved and "defaults" in resolved, resolved[:500]
        assert '"name": "churn_predictor"' in live, live[:300]
        runs = _text(driver)
        for dag_id in ("churn_predictor__train", "churn_predictor__deploy", "churn_predictor__stream"):
            assert dag_id in runs, runs[:1000]
        say("browser: Model tab ok")
        _shot(driver, "ui-model-tab.png", say)
    except BaseException:
        try:
            driver.switch_to.default_content()
            driver.save_screenshot(str(stack.home / "browser-failure.png"))
            say(f"browser: failed at {driver.current_url}; screenshot {stack.home / 'browser-failure.png'}")
        except Exception:  # noqa: BLE001
            pass
        raise
    finally:
        driver.quit()
        shutil.rmtree(tmp, ignore_errors=True)
    return {"browser": time.monotonic() - t0}


def _models_json(stack: Stack) -> dict[str, Any] | None:
    response = requests.get(f"{stack.base_url}/dag-factory/api/models", timeout=60,
                            headers={"Authorization": f"Bearer {stack.token()}"})
    response.raise_for_status()
    data = response.json()
    return data if any(r["status"] == "INVALID SPEC" for r in data["models"]) else None
