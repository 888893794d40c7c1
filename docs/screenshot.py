"""Take docs/status-page.png: `mqlite web` over a scratch database with some traffic, in chromium.

    .venv/bin/python docs/screenshot.py [OUT.png]      # MQLITE_DSN, else a throwaway server

Needs the web and test extras and Debian's chromium + chromedriver (as the browser test does).
Takes about half a minute: the page samples depth every 2 s for its sparklines.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from selenium import webdriver

import mqlite
from mqlite.testing import dsn_or_throwaway, free_port, scratch_database
from mqlite.testing.web import start_web, stop_web

ROOT = Path(__file__).resolve().parent.parent

DATABASE = "mqlite_screenshot"


def traffic(q: mqlite.Queue, step: int) -> None:
    """One step of made-up load: emails rise then drain, orders trickle, thumbnails burst."""
    q.push_many("emails", [f"mail {step}-{i}" for i in range(6 if step < 7 else 1)])
    for _ in range(2 if step < 7 else 5):
        q.pop("emails")
    q.push("orders", f'{{"order": {1000 + step}}}')
    if step % 3 == 0:
        q.pop("orders")
    if step in (3, 4, 9):
        q.push_many("thumbnails", [f"img-{step}-{i}.png" for i in range(12)])
    for _ in range(4):
        with q.claim("thumbnails"):
            pass


def main(out: Path) -> None:
    with dsn_or_throwaway(None) as server, scratch_database(server, DATABASE) as dsn:
        q = mqlite.Queue(dsn)
        q.apply_schema()
        q.push("reports", b"monthly", delay=3600)
        q.push("exports", b"csv for finance")
        q.pause("exports")
        for body, error in [
            (b'{"charge": 42, "card": "tok_visa"}', "CardDeclined: insufficient funds\n\nTraceback (most recent call last):\n"
             '  File "billing.py", line 88, in charge\n    raise CardDeclined(reply.reason)'),
            (b"<script>alert(1)</script>", "ValueError: not JSON: '<script>alert(1)</script>'"),
        ]:
            q.push("payments", body)
            m = q.take("payments")
            assert m is not None
            q.fail(m, error)
        port = free_port()
        web = start_web(dsn, port)
        profile = tempfile.mkdtemp(prefix="mqlite-shot-")
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--hide-scrollbars", "--window-size=1280,900", f"--user-data-dir={profile}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=webdriver.ChromeService("/usr/bin/chromedriver"))
        try:
            driver.get(f"http://127.0.0.1:{port}/")
            for step in range(12):
                traffic(q, step)
                time.sleep(2.1)  # pacing the demo load to the page's refresh, not synchronisation
            driver.save_screenshot(str(out))
        finally:
            driver.quit()
            stop_web(web)
            q.close()
    print(out)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "status-page.png")
