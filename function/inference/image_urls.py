"""Fetching the image an event names by URL, from where the operator allows and nowhere else (no SSRF).

`IMAGE_URL_ALLOWED_PREFIXES` lists URL prefixes; a URL is fetched only when its scheme, host and port equal a
prefix's and its path lies under the prefix's path, compared as sent. URLs with credentials, `.` or `..` path
segments, `;` or percent-escaped ASCII in the path are refused outright: they are how a URL that looks allowed
reaches elsewhere on some server. A redirect is followed only to a URL that passes the same check, at most
`MAX_REDIRECTS` times. The body is asked for and read uncompressed (a few compressed bytes can expand to
gigabytes) and held to MAX_UPLOAD_BYTES as it arrives; the whole fetch to IMAGE_URL_TIMEOUT_SECONDS.

httpx is imported on the first fetch, not at start: most deployments never fetch."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING
from urllib.parse import unquote, urljoin, urlsplit

from function.inference import images
from function.settings import BadSetting, Settings

if TYPE_CHECKING:
    import httpx

MAX_REDIRECTS = 3
DEFAULT_PORTS = {"http": 80, "https": 443}


class ImageUrlRefused(ValueError):
    """The URL is not under an allowed prefix (or fetching is off). The event's fault: a 4xx, no redelivery."""


class ImageUrlUnreadable(ValueError):
    """The allowed server answered, but not with an image: 4xx, say. Redelivery would not help."""


class ImageUrlFailed(RuntimeError):
    """The allowed server could not be reached, failed (5xx) or was too slow: a redelivery may succeed."""


MAX_URL_CHARS = 4096
# What a path may hold as sent: unreserved and sub-delimiter characters, and percent-escapes of non-ASCII bytes
# (UTF-8) or a space only. No ';' (Tomcat reads "..;" as ".."), no escaped ASCII ('%2e', '%2f', '%5c', '%25'):
# servers differ in how and how often they decode those, and so in where the path leads.
_RAW_PATH = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,=:@/]|%20|%[89A-Fa-f][0-9A-Fa-f])*")


class _Place:
    """A URL's scheme, host, port and path, as compared against the allowed prefixes."""

    def __init__(self, url: str):
        if len(url) > MAX_URL_CHARS:
            raise ImageUrlRefused(f"URLs longer than {MAX_URL_CHARS} characters are not fetched")
        if any(ch.isspace() or not ch.isprintable() or ch == "\\" for ch in url):
            raise ImageUrlRefused("URLs with whitespace, control characters or backslashes are not fetched")
        try:
            parts = urlsplit(url)
            scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port
        except ValueError as exc:  # a bad IPv6 literal, a port that is not a number, ...
            raise ImageUrlRefused(f"not a URL this function fetches: {url[:200]!r} ({exc})") from exc
        if scheme not in DEFAULT_PORTS or not host:
            raise ImageUrlRefused(f"only http and https URLs with a host are fetched, not {url[:200]!r}")
        if parts.username is not None or parts.password is not None:
            raise ImageUrlRefused("URLs with credentials in them are not fetched")
        if not _RAW_PATH.fullmatch(parts.path):
            raise ImageUrlRefused("URLs whose path has ';' or percent-escaped ASCII are not fetched")
        try:  # overlong or broken UTF-8 is how old servers were tricked into reading '..'
            unquote(parts.path, errors="strict")
        except UnicodeDecodeError as exc:
            raise ImageUrlRefused("URLs whose path is not UTF-8 are not fetched") from exc
        self.path = parts.path or "/"
        if any(segment in (".", "..") for segment in self.path.split("/")):
            raise ImageUrlRefused("URLs with . or .. path segments are not fetched")
        self.scheme, self.host, self.port = scheme, host.lower(), port or DEFAULT_PORTS[scheme]

    def under(self, prefix: _Place) -> bool:
        folder = prefix.path if prefix.path.endswith("/") else prefix.path + "/"
        return (self.scheme, self.host, self.port) == (prefix.scheme, prefix.host, prefix.port) and (
            self.path.startswith(folder) or self.path == prefix.path
        )


class ImageUrls:
    def __init__(self, allowed_prefixes: tuple[str, ...], timeout_s: float, max_bytes: int):
        try:
            self._allowed = [_Place(prefix) for prefix in allowed_prefixes]
        except ImageUrlRefused as exc:
            raise BadSetting(f"IMAGE_URL_ALLOWED_PREFIXES: {exc}") from exc
        self._timeout_s, self._max_bytes = timeout_s, max_bytes
        self._client: httpx.AsyncClient | None = None

    @classmethod
    def of(cls, settings: Settings) -> ImageUrls:
        """Raises BadSetting for an allowed prefix that is not one."""
        return cls(
            settings.image_url_allowed_prefixes, settings.image_url_timeout_s, settings.max_upload_bytes
        )

    def check(self, url: str) -> None:
        """Raises ImageUrlRefused unless `url` may be fetched."""
        if not self._allowed:
            raise ImageUrlRefused(
                "fetching images by URL is off: the operator has set no IMAGE_URL_ALLOWED_PREFIXES"
            )
        place = _Place(url)
        if not any(place.under(prefix) for prefix in self._allowed):
            raise ImageUrlRefused(f"{url} is not under an allowed prefix (IMAGE_URL_ALLOWED_PREFIXES)")

    async def fetch(self, url: str) -> bytes:
        """The bytes at `url`; raises ImageUrlRefused, ImageUrlUnreadable, ImageUrlFailed or ImageTooLarge."""
        self.check(url)
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._follow(url)
        except TimeoutError as exc:
            raise ImageUrlFailed(f"{url} did not answer within {self._timeout_s:g} s") from exc

    async def _follow(self, url: str) -> bytes:
        import httpx

        client = self._client or self._open()
        for _ in range(MAX_REDIRECTS + 1):
            try:
                async with client.stream("GET", url, headers={"Accept-Encoding": "identity"}) as response:
                    if response.is_redirect:
                        url = urljoin(url, response.headers.get("location", ""))
                        self.check(url)  # a redirect to elsewhere is refused like the URL itself would be
                        continue
                    if response.status_code >= 500:
                        raise ImageUrlFailed(f"{url} answered {response.status_code}")
                    if response.status_code != 200:
                        raise ImageUrlUnreadable(f"{url} answered {response.status_code}, not an image")
                    if response.headers.get("content-encoding", "identity").lower() != "identity":
                        raise ImageUrlUnreadable(
                            f"{url} answered compressed ({response.headers['content-encoding']})"
                        )
                    return await self._read(response, url)
            except httpx.InvalidURL as exc:
                raise ImageUrlRefused(f"not a URL this function fetches: {exc}") from exc
            except httpx.TransportError as exc:
                raise ImageUrlFailed(f"{url} could not be fetched: {type(exc).__name__} {exc}") from exc
        raise ImageUrlUnreadable(f"{url} redirected more than {MAX_REDIRECTS} times")

    async def _read(self, response: httpx.Response, url: str) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            raise self._too_large(url, int(declared))
        body = bytearray()
        async for chunk in response.aiter_raw():  # never decompressed
            body += chunk
            if len(body) > self._max_bytes:
                raise self._too_large(url, len(body))
        return bytes(body)

    def _too_large(self, url: str, size: int) -> images.ImageTooLarge:
        return images.ImageTooLarge(
            f"{url} holds {size:,} bytes or more, more than the limit of {self._max_bytes:,} (MAX_UPLOAD_BYTES)"
        )

    def _open(self) -> httpx.AsyncClient:
        import http.cookiejar  # here, not at start: 50 ms of imports a cold start need not pay

        import httpx

        # No redirects by httpx itself (each hop is checked here), no proxy from the environment (it would
        # decide where the request goes), no cookies kept between events: a jar whose policy allows no domain.
        no_cookies = http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        self._client = httpx.AsyncClient(
            follow_redirects=False, trust_env=False, timeout=self._timeout_s, cookies=no_cookies
        )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
