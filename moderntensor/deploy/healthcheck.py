"""``python -m moderntensor.deploy.healthcheck [URL] [--live]``: the image's healthcheck.

GETs ``URL`` (default ``$MT_HEALTH_URL``, else the node's ``http://127.0.0.1:8545/health``) and
exits 0 when it answers 200. With ``--live`` any HTTP answer counts (a node whose ``/health``
says 503 -- not finalizing yet -- is still alive: the bootnode and validators of a Compose
testnet use this, since none of them can finalize before the others start). Exit 1 otherwise,
with one line saying why (``docker inspect`` shows it).
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

__all__ = ["DEFAULT_URL", "check", "main"]

DEFAULT_URL = "http://127.0.0.1:8545/health"
TIMEOUT_S = 4.0


def check(url: str, *, live: bool = False, timeout: float = TIMEOUT_S) -> tuple[bool, str]:
    """(healthy, one line saying what was seen)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            body = answer.read(512).decode("utf-8", "replace")
            return True, f"{answer.status} {body}"
    except urllib.error.HTTPError as exc:
        body = exc.read(512).decode("utf-8", "replace")
        return live, f"{exc.code} {body}"
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"no answer from {url}: {reason}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m moderntensor.deploy.healthcheck")
    parser.add_argument("url", nargs="?", default=os.environ.get("MT_HEALTH_URL", DEFAULT_URL))
    parser.add_argument("--live", action="store_true", help="any HTTP answer is healthy")
    args = parser.parse_args(argv)
    if not args.url.startswith(("http://", "https://")):
        parser.error(f"expected an http(s) URL, got {args.url!r}")
    healthy, line = check(args.url, live=args.live)
    print(line.replace("\n", " ")[:300])
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
