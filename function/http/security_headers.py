"""Security headers on every answer (a pure ASGI middleware, outermost, so refusals made below Litestar get them
too). The page sets its own CSP and framing rules (http.routes.web), which take precedence: only the names an answer
lacks are added. No HSTS: TLS ends at the ingress, which sets it."""

from __future__ import annotations

# What a security review expects of an API's answers.
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
# An HTML answer without a CSP of its own (the API documentation under /schema: Swagger UI, its files served by
# the function, no inline script) may load scripts, styles and images from the function alone, and fetch only
# from it ("Try it out"). Swagger UI draws its icons from data: URLs.
HTML_CSP = (
    b"content-security-policy",
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    b"base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
)


class SecurityHeaders:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message: dict) -> None:
            await send(_secured(message))

        await self.app(scope, receive, with_headers)


def _secured(message: dict) -> dict:
    if message["type"] != "http.response.start":
        return message
    headers = list(message.get("headers", ()))
    present = {name.lower(): value for name, value in headers}
    html = present.get(b"content-type", b"").startswith(b"text/html")
    for header in SECURITY_HEADERS:
        if header[0] not in present:
            headers.append(HTML_CSP if html and header[0] == HTML_CSP[0] else header)
    return {**message, "headers": headers}
