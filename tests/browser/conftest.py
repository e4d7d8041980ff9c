"""Headless Chromium for the browser tests, driven by Selenium with the Debian packages'
browser and driver (``apt-get install chromium chromium-driver``; nothing is downloaded).

Where there is no browser the tests are skipped with the reason; CI installs it (.ci/run).
Screenshots go to ``$SKIER_TEST_ARTIFACTS`` (CI sets it) or the pytest temp folder.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# The tests (not the library) read the environment: where the browser and driver are.
BROWSER = os.environ.get("SKIER_TEST_CHROMIUM") or shutil.which("chromium") or ""
DRIVER = os.environ.get("SKIER_TEST_CHROMEDRIVER") or shutil.which("chromedriver") or ""


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("SKIER_TEST_ARTIFACTS")
    folder = Path(where) if where else tmp_path_factory.mktemp("artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    if not BROWSER or not Path(BROWSER).exists():
        pytest.skip("no Chromium: apt-get install -y chromium chromium-driver (CI installs it)")
    if not DRIVER or not Path(DRIVER).exists():
        pytest.skip("no chromedriver: apt-get install -y chromium-driver (CI installs it)")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = BROWSER  # given explicitly: Selenium never fetches a browser
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,900",
        "--no-first-run",
        "--disable-extensions",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver: Any) -> list[str]:
    """Console messages of level SEVERE since the last call (errors, CSP violations, 404s)."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def images_loaded(driver: Any) -> list[int]:
    """naturalWidth of every image on the page (0: did not load)."""
    return list(driver.execute_script("return [...document.images].map(i => i.naturalWidth)"))


def no_alert(driver: Any) -> bool:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        driver.switch_to.alert  # noqa: B018 - the property raises when there is none
    except NoAlertPresentException:
        return True
    return False
