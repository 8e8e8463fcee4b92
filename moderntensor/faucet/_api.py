"""The faucet's HTTP API, transport-free: a request in, a :class:`Response` out.

Routes (JSON unless said otherwise):

* ``GET /`` and ``/static/*``: the web page (package files, no build step, no internet).
* ``GET /api/info``: faucet address, amount, limits, chain id, balance, proof-of-work setting.
* ``GET /api/stats``: lifetime and 24-hour counts, claims by state, payer figures.
* ``GET /api/challenge``: a proof-of-work challenge (404 when ``pow_difficulty = 0``).
* ``POST /api/claim`` ``{"address": "0x...", ["challenge", "nonce"]}``: 200 with ``txHash``;
  4xx from ``_request``/``_limits`` (429 carries ``Retry-After``); 503 if the node refused
  or cannot be reached.
* ``GET /api/tx/<hash>``: a payout's state (``signed``, ``sent``, ``final``, ``failed``) and
  block, for the page to show it finalizing.
* ``/api/admin/*`` with ``Authorization: Bearer <admin_token>``: ``GET blocks``, ``POST
  block``/``unblock`` ``{"kind": "address"|"ip", "value", ["reason"]}``, ``GET
  history?limit=N&address=0x..``, ``POST cleanup``. 404 when no token is configured, 401 on a
  wrong one (compared in constant time).
"""

from __future__ import annotations

import hmac
import importlib.resources
import ipaddress
import logging
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import attrs
import orjson

from moderntensor.crypto import checksum_address, parse_address
from moderntensor.faucet._config import FaucetConfig
from moderntensor.faucet._limits import Allowed, decide_claim, is_ip_blocked
from moderntensor.faucet._payer import Payer, PayoutFailed
from moderntensor.faucet._pow import PowBook
from moderntensor.faucet._request import BadRequest, compute_client_ip, parse_claim
from moderntensor.faucet._rpc import NodeError, NodeUnavailable
from moderntensor.faucet._store import Store
from moderntensor.node._logging import event

__all__ = ["FaucetApi", "Request", "Response"]

log = logging.getLogger("moderntensor.faucet")

_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/static/faucet.js": ("faucet.js", "text/javascript; charset=utf-8"),
    "/static/sha256.js": ("sha256.js", "text/javascript; charset=utf-8"),
    "/static/faucet.css": ("faucet.css", "text/css; charset=utf-8"),
}
_BALANCE_TTL = 2.0


@attrs.frozen(slots=True)
class Request:
    method: str
    target: str
    headers: dict[str, list[str]]
    """Lower-case names; every value of a repeated header, in order."""
    body: bytes
    peer_ip: str

    def header(self, name: str) -> str | None:
        values = self.headers.get(name)
        return values[-1] if values else None


@attrs.frozen(slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


def _json(status: int, doc: Any, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response(status, orjson.dumps(doc), "application/json", headers)


def _error(status: int, reason: str, message: str, **extra: Any) -> Response:
    return _json(status, {"error": reason, "message": message, **extra})


class FaucetApi:
    """Routes and handlers; shares the store and payer with the background tasks."""

    def __init__(
        self,
        config: FaucetConfig,
        store: Store,
        payer: Payer,
        clock: Callable[[], float],
        monotonic: Callable[[], float],
    ) -> None:
        self.config = config
        self.store = store
        self.payer = payer
        self.clock = clock
        self.monotonic = monotonic
        self.pow = PowBook(config.pow_difficulty, config.pow_ttl)
        self.faucet_address = payer.key.address
        self._balance: tuple[float, int | None] = (-_BALANCE_TTL - 1, None)
        self.served: dict[int, int] = {}
        for value in config.blocked_addresses:
            parse_address(value)  # a typo must stop the start, not be ignored

    async def handle(self, request: Request) -> Response:
        response = await self._route(request)
        self.served[response.status] = self.served.get(response.status, 0) + 1
        return response

    async def _route(self, request: Request) -> Response:
        path = urlsplit(request.target).path
        if path in _STATIC and request.method == "GET":
            name, content_type = _STATIC[path]
            body = importlib.resources.files("moderntensor.faucet").joinpath("static", name)
            return Response(200, body.read_bytes(), content_type)
        if path == "/api/claim":
            if request.method != "POST":
                return _error(405, "method", "POST a JSON body to /api/claim")
            return await self._claim(request)
        if path.startswith("/api/admin/"):
            return self._admin(request, path.removeprefix("/api/admin/"))
        if request.method != "GET":
            return _error(405, "method", f"{request.method} is not allowed on {path}")
        if path == "/api/info":
            return _json(200, await self._info())
        if path == "/api/stats":
            return _json(200, await self._stats())
        if path == "/api/challenge":
            if not self.pow.difficulty:
                return _error(404, "no_pow", "this faucet asks for no proof of work")
            challenge = self.pow.issue(secrets.token_bytes(16), self.monotonic())
            ttl = challenge.expires_at - self.monotonic()
            return _json(
                200,
                {"challenge": challenge.challenge, "difficulty": challenge.difficulty, "ttl": ttl},
            )
        if path.startswith("/api/tx/"):
            row = self.store.find_by_hash(path.removeprefix("/api/tx/").lower())
            if row is None:
                return _error(404, "unknown_tx", "no payout with this hash")
            return _json(200, {k: v for k, v in row.to_json().items() if k != "ip"})
        return _error(404, "not_found", f"no such page: {path}")

    # -- claims --------------------------------------------------------------------------

    async def _claim(self, request: Request) -> Response:
        try:
            claim = parse_claim(
                request.header("content-type"),
                request.body,
                self.config.max_body_bytes,
                self.faucet_address,
            )
            ip = compute_client_ip(
                request.peer_ip, request.headers.get("x-forwarded-for", []), self.config.proxy_count
            )
        except BadRequest as exc:
            return _error(exc.status, exc.reason, exc.message)
        address = "0x" + claim.address.hex()
        blocked_addresses = {a.lower() for a in self.config.blocked_addresses}
        blocked_addresses.update(self.store.get_blocked("address"))
        ip_blocked = is_ip_blocked(ip, (*self.config.blocked_ips, *self.store.get_blocked("ip")))
        if self.pow.difficulty and not ip_blocked and address not in blocked_addresses:
            problem = self.pow.redeem(claim.pow_challenge, claim.pow_nonce, self.monotonic())
            if problem is not None:
                return _error(403, "pow", problem)
        now = self.clock()
        decision = decide_claim(
            self.config,
            address_blocked=address in blocked_addresses,
            ip_blocked=ip_blocked,
            usage=self.store.get_usage(
                address, ip, (self.config.address_window, self.config.ip_window), now
            ),
            now=now,
        )
        if not isinstance(decision, Allowed):
            extra: dict[str, Any] = {}
            headers: tuple[tuple[str, str], ...] = ()
            if decision.retry_at is not None:
                wait = max(1, int(decision.retry_at - now + 0.999))
                extra["retryAfter"] = wait
                headers = (("retry-after", str(wait)),)
            event(
                log, logging.INFO, "faucet.refused", address=address, ip=ip, reason=decision.reason
            )
            body = {"error": decision.reason, "message": decision.message, **extra}
            return _json(decision.status, body, headers)
        claim_id = self.store.add_claim(
            address, ip, decision.amount, now
        )  # no await since the check
        try:
            tx_hash = await self.payer.pay(claim_id)
        except PayoutFailed as exc:
            return _error(503, "payout_failed", str(exc))
        return _json(
            200,
            {
                "txHash": tx_hash,
                "address": checksum_address(claim.address),
                "amount": str(decision.amount),
                "claim": claim_id,
            },
        )

    # -- info and statistics -------------------------------------------------------------

    async def _get_balance(self) -> int | None:
        when, value = self._balance
        if self.monotonic() - when > _BALANCE_TTL:
            try:
                answer = await self.payer.rpc.call(
                    "eth_getBalance", [self.payer.address_hex, "latest"]
                )
                value = int(answer, 16)
            except (NodeError, NodeUnavailable, ValueError, TypeError):
                value = None
            self._balance = (self.monotonic(), value)
        return value

    async def _info(self) -> dict[str, Any]:
        c = self.config
        balance = await self._get_balance()
        return {
            "address": checksum_address(self.faucet_address),
            "chainId": self.payer.chain_id,
            "amount": str(c.amount),
            "balance": None if balance is None else str(balance),
            "limits": {
                "addressClaims": c.address_claims,
                "addressWindow": c.address_window,
                "ipClaims": c.ip_claims,
                "ipWindow": c.ip_window,
                "dailyCap": str(c.daily_cap),
            },
            "pow": {"difficulty": c.pow_difficulty},
            "symbol": c.symbol,
            "explorerUrl": c.explorer_url,
        }

    async def _stats(self) -> dict[str, Any]:
        now = self.clock()
        stats = self.store.get_stats(now)
        stats["paidToday"] = str(self.store.get_paid_today(now))
        stats["dailyCap"] = str(self.config.daily_cap)
        stats["payer"] = self.payer.statistics()
        stats["pow"] = self.pow.statistics()
        stats["http"] = {str(k): v for k, v in sorted(self.served.items())}
        balance = await self._get_balance()
        stats["balance"] = None if balance is None else str(balance)
        return stats

    # -- admin ---------------------------------------------------------------------------

    def _admin(self, request: Request, action: str) -> Response:
        token = self.config.admin_token
        if not token:
            return _error(404, "not_found", "admin endpoints are off (no admin_token configured)")
        given = request.header("authorization") or ""
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return _error(401, "unauthorized", "send Authorization: Bearer <admin_token>")
        query = parse_qs(urlsplit(request.target).query)
        if action == "blocks" and request.method == "GET":
            return _json(200, {"blocks": self.store.list_blocks()})
        if action == "history" and request.method == "GET":
            text = (query.get("limit") or ["100"])[0]
            if not text.isdigit():
                return _error(400, "bad_limit", "limit must be a number")
            addresses = query.get("address") or []
            rows = self.store.get_history(
                min(1000, int(text)), addresses[0].lower() if addresses else None
            )
            return _json(200, {"claims": [r.to_json() for r in rows]})
        if action == "cleanup" and request.method == "POST":
            removed = self.store.cleanup(self.config.history_retention, self.clock())
            return _json(200, {"removed": removed})
        if action in ("block", "unblock") and request.method == "POST":
            try:
                kind, value, reason = _parse_block(request.body)
            except BadRequest as exc:
                return _error(exc.status, exc.reason, exc.message)
            if action == "block":
                self.store.block(kind, value, reason, self.clock())
                event(log, logging.INFO, "faucet.blocked", kind=kind, value=value)
                return _json(200, {"blocked": {"kind": kind, "value": value}})
            found = self.store.unblock(kind, value)
            return _json(200 if found else 404, {"unblocked": found, "kind": kind, "value": value})
        return _error(404, "not_found", f"no admin action {request.method} {action}")

    def cleanup(self) -> int:
        removed = self.store.cleanup(self.config.history_retention, self.clock())
        if removed:
            event(log, logging.INFO, "faucet.cleanup", removed=removed)
        return removed


def _parse_block(body: bytes) -> tuple[str, str, str]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest(400, "bad_json", "the body is not valid JSON") from None
    if not isinstance(doc, dict) or doc.get("kind") not in ("address", "ip"):
        raise BadRequest(400, "bad_kind", '"kind" must be "address" or "ip"')
    value, reason = doc.get("value"), doc.get("reason", "")
    if not isinstance(value, str) or not isinstance(reason, str):
        raise BadRequest(400, "bad_value", '"value" (and "reason") must be strings')
    try:
        if doc["kind"] == "address":
            value = "0x" + parse_address(value).hex()
        else:
            value = str(ipaddress.ip_network(value, strict=False))
            if value.endswith(("/32", "/128")):
                value = value.rsplit("/", 1)[0]
    except ValueError as exc:
        raise BadRequest(400, "bad_value", str(exc)) from None
    return doc["kind"], value, reason
