"""The route a request will reach, found once, by Litestar's own router, before anything else decides on it (a
pure ASGI middleware, just inside HEAD as GET).

The layers in front of Litestar (request metrics, admission control, slow bodies) decide on the route, not on the
raw path: every spelling the router accepts (`/predict/`, `//predict`) is the same door, so no limit is one
character away from being skipped, and a metric's `path` label is the route's template, a set as small as the
table of doors, whatever paths clients make up."""

from __future__ import annotations

from dataclasses import dataclass

from litestar.exceptions import HTTPException
from litestar.utils import normalize_path

INFERENCE = "inference"  # the `opt` key of a door that decodes and runs the model (function.http.doors)
SCOPE_KEY = "fish.route"


@dataclass(frozen=True)
class Route:
    template: str  # the door's path template, as Litestar writes it
    inference: bool  # a door that decodes and runs the model: admission control counts it


NO_ROUTE = Route("(no route)", False)  # Litestar answers 404 or 405, without the model


class FindRoute:
    """Puts the request's `Route` in its scope (`route_of` reads it), asked of the Litestar `app`'s router."""

    def __init__(self, app, litestar_app):
        self.app = app
        self.router = litestar_app.asgi_router

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            scope = {**scope, SCOPE_KEY: self.find(scope)}
        await self.app(scope, receive, send)

    def find(self, scope: dict) -> Route:
        path = scope["path"]
        if root_path := scope.get("root_path", ""):  # as Litestar's router reads it
            path = path.split(root_path, maxsplit=1)[-1]
        try:
            *_, handler, _, _, template = self.router.handle_routing(normalize_path(path), scope["method"])
        except HTTPException:
            return NO_ROUTE
        return Route(template or "/", bool(handler.opt.get(INFERENCE)))


def route_of(scope: dict) -> Route:
    return scope.get(SCOPE_KEY, NO_ROUTE)


def runs_the_model(scope: dict) -> bool:
    return route_of(scope).inference
