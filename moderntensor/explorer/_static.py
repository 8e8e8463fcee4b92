"""The page's files, read once from the package (no build step, nothing from the internet).

Each file is served with an ``ETag`` (a hash of its bytes) and answered ``304`` when the
browser already has it. ``index.html`` is revalidated on every load (``no-cache``) so a node
upgrade shows the new page at once; scripts and styles may be used for ``max-age`` seconds
without asking, then revalidated.
"""

from __future__ import annotations

import hashlib
import importlib.resources

import attrs

__all__ = ["ASSET_MAX_AGE", "StaticFile", "load_static"]

ASSET_MAX_AGE = 300
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}


@attrs.frozen(slots=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str
    cache_control: str


def load_static() -> dict[str, StaticFile]:
    """URL path -> file, for every file of ``moderntensor/explorer/static`` (``/`` is
    ``index.html``; the rest under ``/static/``)."""
    files: dict[str, StaticFile] = {}
    root = importlib.resources.files("moderntensor.explorer") / "static"
    for entry in root.iterdir():
        name = entry.name
        suffix = name[name.rfind(".") :] if "." in name else ""
        if not entry.is_file() or suffix not in _TYPES:
            continue
        body = entry.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        if name == "index.html":
            page = StaticFile(body, _TYPES[suffix], etag, "no-cache")
            files["/"] = files["/index.html"] = page
        else:
            cache = f"public, max-age={ASSET_MAX_AGE}"
            files["/static/" + name] = StaticFile(body, _TYPES[suffix], etag, cache)
    return files
