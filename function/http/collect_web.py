"""The files the function serves from the web folder, and their collection at build time.

`python -m function.http.collect_web SOURCE TARGET` copies them (web/'s own, and the few it needs from
web/node_modules, not the whole of it) into TARGET, with the same layout: what WEB_DIR may name. A wheel built from
the checkout carries the same copy inside the package (setup.py runs `collect` while it builds). Standard library
only: setup.py loads this file by its path, before anything the function depends on is installed."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

INDEX = "index.html"
# The page's files: served name (under /static/<version>/) -> file under the web folder.
FILES = {
    "app.css": "app.css",
    "theme.js": "theme.js",
    "app.js": "app.js",
    "api.js": "api.js",
    "photos.js": "photos.js",
    "results.js": "results.js",
    "history.js": "history.js",
    "stats.js": "stats.js",
    "vendor/bootstrap.min.css": "node_modules/bootstrap/dist/css/bootstrap.min.css",
    "vendor/bootstrap.bundle.min.js": "node_modules/bootstrap/dist/js/bootstrap.bundle.min.js",
    "vendor/chart.umd.min.js": "node_modules/chart.js/dist/chart.umd.min.js",
}
# The API documentation's files (Swagger UI from npm), served under /schema/static/<version>/ whether the page is
# on or off (WEB_UI), so /schema/swagger loads nothing from another host.
DOCS_FILES = {
    "swagger-ui.css": "node_modules/swagger-ui-dist/swagger-ui.css",
    "swagger-ui-bundle.js": "node_modules/swagger-ui-dist/swagger-ui-bundle.js",
    "api-docs.js": "api-docs.js",
}
# Not served, but carried wherever the files above go (a wheel, an image): the npm packages' licences.
LICENSES = [
    "node_modules/bootstrap/LICENSE",
    "node_modules/chart.js/LICENSE.md",
    "node_modules/swagger-ui-dist/LICENSE",
    "node_modules/swagger-ui-dist/NOTICE",
    "node_modules/swagger-ui-dist/swagger-ui-bundle.js.LICENSE.txt",
]
SOURCES = [INDEX, *FILES.values(), *DOCS_FILES.values(), *LICENSES]


def missing(source: Path) -> list[str]:
    """The served files `source` lacks (those under node_modules/ until `npm ci` has run in it)."""
    return [relative for relative in SOURCES if not (source / relative).is_file()]


def collect(source: Path, target: Path) -> None:
    """Copy the served files from `source` (web/ after `npm ci`) into `target`."""
    for relative in SOURCES:
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / relative, target / relative)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m function.http.collect_web SOURCE_WEB_DIR TARGET_DIR")
    collect(Path(sys.argv[1]), Path(sys.argv[2]))
