"""The README's quickstart runs as written."""

from __future__ import annotations

import contextlib
import io
import re

from .helpers import ROOT


def test_quickstart_runs_as_written(dsn: str) -> None:
    text = (ROOT / "README.md").read_text()
    code = re.findall(r"```python\n(.*?)```", text, re.S)[0]
    assert '"mysql://root@127.0.0.1:3306/test"' in code
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code.replace('"mysql://root@127.0.0.1:3306/test"', repr(dsn)), "README.md", "exec"), {})
    assert out.getvalue().splitlines()[1:] == ["one", "2"]
