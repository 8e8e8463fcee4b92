"""Who may claim now: block lists, per-address and per-IP cooldowns, the daily cap. Pure.

:func:`decide_claim` is given the config, the claimant's recent history (:class:`Usage`, read
from the store by the caller) and ``now``; it answers :class:`Allowed` or :class:`Refused`
with an HTTP status and the time the claimant may try again. No clock, no I/O: the HTTP shell
reads the store and records the claim in the same synchronous step, so two concurrent claims
cannot both pass a limit that has room for one.

Rules, first broken wins:

1. a blocked address or IP (an IP matches a blocked address or network, ``10.0.0.0/8``) -> 403;
2. the address had ``address_claims`` claims within ``address_window`` -> 429, retry when the
   oldest of them leaves the window;
3. the IP had ``ip_claims`` claims within ``ip_window`` -> 429, likewise;
4. today's payouts (UTC day) plus this claim exceed ``daily_cap`` -> 429, retry at midnight UTC.

Failed payouts do not count (the store leaves them out of :class:`Usage`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

import attrs

from moderntensor.faucet._config import FaucetConfig

__all__ = [
    "Allowed",
    "Refused",
    "Usage",
    "compute_day_start",
    "decide_claim",
    "is_ip_blocked",
]

DAY = 86_400.0


@attrs.frozen(slots=True)
class Usage:
    """The claimant's counted claims: times within each window, and today's total paid."""

    address_times: tuple[float, ...]
    ip_times: tuple[float, ...]
    paid_today: int


@attrs.frozen(slots=True)
class Allowed:
    amount: int


@attrs.frozen(slots=True)
class Refused:
    status: int
    reason: str
    message: str
    retry_at: float | None = None


def compute_day_start(now: float) -> float:
    """Midnight UTC at or before ``now`` (unix seconds)."""
    return (now // DAY) * DAY


def is_ip_blocked(ip: str, blocked: Iterable[str]) -> bool:
    """Whether ``ip`` equals a blocked address or lies in a blocked network (bad entries and
    an unparsable ``ip`` never match: a typo in the list must not block everyone)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    for entry in blocked:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except (ValueError, TypeError):
            continue
    return False


def _retry(times: tuple[float, ...], limit: int, window: float) -> float:
    """When a claim leaves the window so that fewer than ``limit`` remain in it."""
    ordered = sorted(times)
    return ordered[len(ordered) - limit] + window


def decide_claim(
    config: FaucetConfig,
    *,
    address_blocked: bool,
    ip_blocked: bool,
    usage: Usage,
    now: float,
) -> Allowed | Refused:
    """Apply the rules of the module docstring (``usage`` holds times within the windows)."""
    if address_blocked:
        return Refused(403, "address_blocked", "this address is blocked")
    if ip_blocked:
        return Refused(403, "ip_blocked", "requests from your IP address are blocked")
    recent = tuple(t for t in usage.address_times if t > now - config.address_window)
    if len(recent) >= config.address_claims:
        return Refused(
            429,
            "address_cooldown",
            "this address already claimed; wait for its cooldown",
            _retry(recent, config.address_claims, config.address_window),
        )
    recent = tuple(t for t in usage.ip_times if t > now - config.ip_window)
    if len(recent) >= config.ip_claims:
        return Refused(
            429,
            "ip_cooldown",
            "too many claims from your IP address; wait for its cooldown",
            _retry(recent, config.ip_claims, config.ip_window),
        )
    if usage.paid_today + config.amount > config.daily_cap:
        return Refused(
            429,
            "daily_cap",
            "the faucet reached today's limit; come back after midnight UTC",
            compute_day_start(now) + DAY,
        )
    return Allowed(config.amount)
