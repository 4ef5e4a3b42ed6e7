"""Until function/app.py assembles the web UI's routes, the browser tests' processes add them here (put on
PYTHONPATH by tests/test_web_ui.py only when app.py does not list them)."""

import function.app as _app

_litestar = _app.Litestar


def _with_web(*args, route_handlers=(), **kwargs):
    from function.routes import web

    return _litestar(*args, route_handlers=[*route_handlers, *web.handlers(None)], **kwargs)


_app.Litestar = _with_web
