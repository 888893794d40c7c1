"""docs/examples/fastapi_app.py runs as written: pushes from a route reach its AsyncWorker, and its
long-poll route hands out a message pushed while it waits, through httpx.AsyncClient (ASGI)."""

from __future__ import annotations

import asyncio
import importlib.util
import time
from types import ModuleType

import httpx
import pytest

import mqlite

from .conftest import rows
from .helpers import ROOT

pytest.importorskip("fastapi")


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fastapi_app", ROOT / "docs" / "examples" / "fastapi_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_fastapi_example_pushes_consumes_and_long_polls(dsn: str, q: mqlite.Queue, admin) -> None:
    app = _example().create_app(dsn)

    async def main() -> None:
        async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://example.test"
        ) as client:
            emails = [f"user{i}@example.com" for i in range(20)]
            answers = await asyncio.gather(*(client.post("/signups", json={"email": e}) for e in emails))
            assert [a.status_code for a in answers] == [201] * 20
            assert (await client.post("/signups", json={"name": "no email"})).status_code == 422
            deadline = time.monotonic() + 30
            while sorted((await client.get("/welcomed")).json()) != sorted(emails):
                assert time.monotonic() < deadline, "the worker did not send every welcome"
                await asyncio.sleep(0.02)

            began = time.monotonic()
            empty = await client.get("/jobs/reports/next", params={"wait": 0.3})
            assert empty.status_code == 204 and time.monotonic() - began >= 0.3  # it waited, then gave up

            waiting = asyncio.create_task(client.get("/jobs/reports/next", params={"wait": 20}))
            pushed = await client.post("/jobs/reports", content=b"monthly")
            assert pushed.status_code == 201
            got = await asyncio.wait_for(waiting, 30)
            assert got.status_code == 200 and got.content == b"monthly"
            assert got.headers["x-message-id"] == str(pushed.json()["id"])

    asyncio.run(main())
    assert rows(admin, "SELECT COUNT(*) FROM mqlite_messages") == [(0,)]  # every welcome acknowledged
