"""An example handler for the worker image (`--handler handlers:handle`). Replace it with yours.

Returning acknowledges the message; raising records a failure, which is retried later.
"""

import json


def handle(message):
    try:
        payload = json.loads(message.body)
    except ValueError:
        payload = message.text()
    print(f"{message.queue} #{message.id}: {payload!r}", flush=True)
