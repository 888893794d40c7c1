"""A FastAPI app on `mqlite.aio`: push from a route, a long-poll consumer route, and an AsyncWorker
running in the same process, started and stopped with the app.

    pip install mqlite fastapi uvicorn
    MQLITE_DSN=mysql://app:secret@db.internal/app uvicorn fastapi_app:app

    curl -X POST localhost:8000/signups -H 'content-type: application/json' -d '{"email": "ada@example.com"}'
    curl -X POST localhost:8000/jobs/reports --data-binary 'monthly'
    curl 'localhost:8000/jobs/reports/next?wait=10'     # waits up to 10 s for a message

Nothing here blocks the event loop: every call awaits the library, which runs the database round
trips in threads. A request cancelled mid-call (the client went away) loses no message.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from pydantic import BaseModel

from mqlite.aio import AsyncQueue, AsyncWorker
from mqlite.aio.idle import AsyncIdleWait
from mqlite.message import Message

MAX_WAIT = 30.0  # seconds a long-poll may ask for


class Signup(BaseModel):
    email: str


def create_app(dsn: str | None = None) -> FastAPI:
    """The app over the mqlite table at `dsn` (default: MQLITE_DSN)."""
    welcomed: list[str] = []

    async def send_welcome(message: Message) -> None:
        """The worker's handler: returning acknowledges the message, raising retries it later."""
        await asyncio.sleep(0)  # stands for an async mail client
        welcomed.append(message.text())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        q = AsyncQueue(dsn)
        await q.apply_schema()
        # Signals belong to the server (uvicorn): the worker stops when the app does.
        worker = AsyncWorker(q, ["welcome"], send_welcome, concurrency=8, handle_signals=False)
        running = asyncio.create_task(worker.run())
        app.state.q = q
        try:
            yield
        finally:
            worker.stop()  # handlers in hand finish; nothing new is taken
            await running
            await q.aclose()

    app = FastAPI(lifespan=lifespan)

    @app.post("/signups", status_code=201)
    async def signup(signup: Signup, request: Request) -> dict[str, int]:
        """Queue a welcome email; the AsyncWorker sends it."""
        return {"id": await request.app.state.q.push("welcome", signup.email)}

    @app.get("/welcomed")
    async def sent() -> list[str]:
        return welcomed

    @app.post("/jobs/{queue}", status_code=201)
    async def push(queue: str, request: Request) -> dict[str, int]:
        return {"id": await request.app.state.q.push(queue, await request.body())}

    @app.get("/jobs/{queue}/next")
    async def next_job(queue: str, request: Request, wait: float = 0.0) -> Response:
        """Pop the next message of `queue`, waiting up to `wait` seconds for one (204 if none came).

        Between two polls the request holds no database connection: it sleeps in the event loop.
        """
        q: AsyncQueue = request.app.state.q
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(max(wait, 0.0), MAX_WAIT)
        idle = AsyncIdleWait(0.02, 0.5)
        while True:
            message = await q.pop(queue)
            if message is not None:
                return Response(message.body, media_type="application/octet-stream",
                                headers={"X-Message-Id": str(message.id)})
            left = deadline - loop.time()
            if left <= 0:
                return Response(status_code=204)
            await idle.wait_async(limit=left)

    return app


app = create_app()
