"""The README's quickstart runs as written."""

from __future__ import annotations

import contextlib
import io
import re

from .helpers import ROOT


def test_readme_python_examples_run_as_written(dsn: str) -> None:
    text = (ROOT / "README.md").read_text()
    quickstart, *others = re.findall(r"```python\n(.*?)```", text, re.S)
    assert '"mysql://root@127.0.0.1:3306/test"' in quickstart
    namespace: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(quickstart.replace('"mysql://root@127.0.0.1:3306/test"', repr(dsn)), "README.md", "exec"), namespace)
        assert out.getvalue().splitlines()[1:] == ["one", "2"]
        for code in others:  # later examples continue with the quickstart's `q`
            exec(compile(code, "README.md", "exec"), namespace)
    namespace["q"].close()
