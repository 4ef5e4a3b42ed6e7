"""fish-demo says which extra to install before it starts anything, when the demo's own packages are missing."""

from __future__ import annotations

import sys

import pytest


def test_demo_without_pgserver_names_the_demo_extra(monkeypatch, tmp_path):
    from convert.demo import __main__ as demo

    monkeypatch.setitem(sys.modules, "pgserver", None)  # as if not installed: find_spec answers None
    started = []
    monkeypatch.setattr(demo, "ensure_server", lambda *args: started.append(args))

    with pytest.raises(SystemExit) as refused:
        demo.main(["--home", str(tmp_path), "--port", "1"])

    assert "fish-function[demo]" in str(refused.value.code) and "pgserver" in str(refused.value.code)
    assert started == []  # no MLflow server, no training: the message comes first
