"""The status page in a real browser: `mqlite web` as a process, Debian's chromium driven by Selenium
through the system's chromedriver (nothing is downloaded).

`scripts/bootstrap.sh` installs `chromium chromium-driver` as root on Debian/Ubuntu; elsewhere the
test is skipped, saying so. With MQLITE_SCREENSHOT=path.png it saves a screenshot of the page.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the web extra is not installed: pip install 'mqlite[web]'")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")

from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

import mqlite  # noqa: E402
from mqlite.testing.web import free_port, start_web, stop_web  # noqa: E402

pytestmark = pytest.mark.slow

BROWSERS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
DRIVERS = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1280,760",
)
XSS_BODY = "<script>alert(1)</script>"
XSS_ERROR = '<img src=x onerror="window.__xss = 1; alert(2)">'
TOKEN = "browser-t0ken"


def _first(paths: tuple[str, ...]) -> str | None:
    return next((p for p in paths if os.access(p, os.X_OK)), None)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    binary, driver_path = _first(BROWSERS), _first(DRIVERS) or shutil.which("chromedriver")
    if binary is None or driver_path is None:
        pytest.skip(
            "no chromium + chromedriver: scripts/bootstrap.sh installs them as root on Debian/Ubuntu "
            "(apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    profile = tempfile.mkdtemp(prefix="mqlite-chromium-")
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=driver_path)
    try:
        driver = webdriver.Chrome(options=options, service=service)
    except Exception as exc:  # a browser that is installed but cannot start here
        shutil.rmtree(profile, ignore_errors=True)
        pytest.skip(f"chromium did not start: {str(exc).splitlines()[0]}")
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def web(dsn: str) -> Iterator[Any]:
    """Start `mqlite web` processes on free ports; all stopped at the end."""
    procs: list[subprocess.Popen[str]] = []

    def start(*extra: str, env: dict[str, str] | None = None) -> str:
        port = free_port()
        procs.append(start_web(dsn, port, *extra, env=env))
        return f"http://127.0.0.1:{port}"

    yield start
    for proc in procs:
        stop_web(proc)


def cell(driver: Any, queue: str, column: str) -> str:
    """The text of one cell of a queue's row ('' while the row is absent), read in one script call."""
    return driver.execute_script(
        "const row = [...document.querySelectorAll('#queues tbody tr')].find(r => r.dataset.queue === arguments[0]);"
        "const td = row && row.querySelector('td.' + arguments[1]); return td ? td.textContent : '';",
        queue, column,
    )


def text(driver: Any, css: str) -> str:
    """textContent of the first element matching `css` ('' when none), read in one script call."""
    return driver.execute_script("const e = document.querySelector(arguments[0]); return e ? e.textContent : '';", css)


def click(driver: Any, css: str) -> bool:
    """Click the element matching `css`; False (try again) if absent or replaced meanwhile."""
    try:
        found = driver.find_elements(By.CSS_SELECTOR, css)
        if not found or not found[0].is_enabled():
            return False
        found[0].click()
        return True
    except StaleElementReferenceException:
        return False


def no_alert(driver: Any) -> bool:
    try:
        driver.switch_to.alert  # noqa: B018 (the property raises when no alert is open)
    except NoAlertPresentException:
        return True
    return False


def test_status_page_in_a_browser(browser: Any, web: Any, dsn: str) -> None:
    q = mqlite.Queue(dsn)
    q.apply_schema()
    for i in range(3):
        q.push("emails", f"mail {i}")
    q.push("reports", b"monthly", delay=3600)
    q.pause("reports")
    q.push("broken", XSS_BODY)
    m = q.take("broken")
    assert m is not None
    q.fail(m, XSS_ERROR)
    wait = WebDriverWait(browser, 20, poll_frequency=0.1)

    base = web()
    browser.get(base + "/")
    wait.until(lambda d: cell(d, "emails", "ready") == "3")
    assert cell(browser, "reports", "state") == "paused" and cell(browser, "broken", "failed") == "1"

    # A push elsewhere shows up on the next refresh (the page polls /stats).
    q.push("emails", b"one more")
    wait.until(lambda d: cell(d, "emails", "ready") == "4")

    # The failed message, drawn again by the script since: its body and error are text, not markup.
    assert text(browser, "#failed table.failed pre.body") == XSS_BODY
    assert text(browser, "#failed table.failed pre.error") == XSS_ERROR
    assert browser.execute_script("return document.querySelector('#failed table.failed').dataset.queue") == "broken"
    assert browser.find_elements(By.CSS_SELECTOR, "#failed img, #failed script") == []
    assert no_alert(browser) and browser.execute_script("return window.__xss") is None
    if os.environ.get("MQLITE_SCREENSHOT"):
        browser.save_screenshot(os.environ["MQLITE_SCREENSHOT"])

    # Cancel a second failed message from its row: removed, said so, the first one left.
    q.push("broken", b"doomed")
    doomed = q.take("broken")
    assert doomed is not None and doomed.id != m.id
    q.fail(doomed, "beyond repair")
    wait.until(lambda d: click(d, f'button[data-action="cancel-one"][data-id="{doomed.id}"]'))
    wait.until(lambda d: f"message {doomed.id} of broken: cancelled (was failed)" in text(d, "#status"))
    assert [f.id for f in q.peek("broken", failed=True)] == [m.id]

    # Retry the failed message: it is ready again, out of the failed list.
    wait.until(lambda d: click(d, f'button[data-action="retry-one"][data-id="{m.id}"]'))
    wait.until(lambda d: "retried 1 message(s) of broken" in text(d, "#status"))
    wait.until(lambda d: cell(d, "broken", "ready") == "1" and cell(d, "broken", "failed") == "0")
    assert q.stats().queues["broken"].failed == 0
    wait.until(lambda d: text(d, "#failed") == "No failed messages.")

    # Pause from the page.
    wait.until(lambda d: click(d, '#queues tr[data-queue="emails"] button[data-action="pause"]'))
    wait.until(lambda d: cell(d, "emails", "state") == "paused")
    assert q.is_paused("emails")
    assert no_alert(browser)

    # A server with a token: the page asks for it once, then its buttons send it.
    base = web(env={"MQLITE_WEB_TOKEN": TOKEN})
    browser.get(base + "/")
    form = browser.find_element(By.ID, "token-form")  # never redrawn: safe to hold
    wait.until(lambda d: form.is_displayed())
    browser.find_element(By.ID, "token").send_keys("wrong")
    form.find_element(By.CSS_SELECTOR, "button").click()
    wait.until(lambda d: not form.is_displayed())
    resume = '#queues tr[data-queue="emails"] button[data-action="resume"]'
    wait.until(lambda d: click(d, resume))
    wait.until(lambda d: form.is_displayed() and "token refused" in text(d, "#status"))
    assert q.is_paused("emails")  # the wrong token changed nothing
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    form.find_element(By.CSS_SELECTOR, "button").click()
    wait.until(lambda d: click(d, resume))
    wait.until(lambda d: cell(d, "emails", "state") == "running")
    assert not q.is_paused("emails")
    q.close()
