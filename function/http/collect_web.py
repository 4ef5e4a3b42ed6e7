"""Build time: `python -m function.http.collect_web SOURCE TARGET` copies the files the function serves (web/ and
the few it needs from web/node_modules, not the whole of it) into TARGET, with the same layout: what an image puts
under WEB_DIR."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from function.http.web_files import FILES, INDEX


def collect(source: Path, target: Path) -> None:
    """Copy the served files from `source` (web/ after `npm ci`) into `target`."""
    for relative in [INDEX, *FILES.values()]:
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / relative, target / relative)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m function.http.collect_web SOURCE_WEB_DIR TARGET_DIR")
    collect(Path(sys.argv[1]), Path(sys.argv[2]))
