"""The ``[faucet]`` section of faucet.toml: amounts, limits, proxies, storage, admin token.

Amounts are decimal ether strings (``"1"``, ``"0.5"``) turned into wei here, durations are
seconds. Every limit is checked once at load so a typo stops the faucet before it pays
anything; the sanity rules that need the chain (the amount must be far below a validator's
stake) are checked at start against the node (:func:`check_amount_against_stake`).
"""

from __future__ import annotations

import tomllib
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import attrs

__all__ = [
    "ConfigError",
    "FaucetConfig",
    "check_amount_against_stake",
    "load_config",
    "parse_ether",
]

WEI_PER_ETHER = 10**18
HARD_MAX_AMOUNT = 100 * WEI_PER_ETHER
"""No faucet claim pays more than this, whatever the config says: a typo of a few zeros must
not turn a faucet into a validator-funding machine."""
STAKE_FRACTION = 10
"""A claim must be under 1/STAKE_FRACTION of the smallest active validator's stake."""


class ConfigError(ValueError):
    """A faucet.toml value that is missing, of the wrong type or out of range; names the key."""


def parse_ether(text: str | int | float, key: str) -> int:
    """Decimal ether (``"0.5"``) to wei.

    Raises:
        ConfigError: not a non-negative number with at most 18 decimals.
    """
    try:
        value = Decimal(str(text)) * WEI_PER_ETHER
    except InvalidOperation:
        raise ConfigError(f"{key}: {text!r} is not a number of ether") from None
    if value < 0 or value != value.to_integral_value():
        raise ConfigError(f"{key}: {text!r} must be >= 0 with at most 18 decimals")
    return int(value)


def _positive(instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{attribute.name}: must be > 0, got {value!r}")


def _non_negative(instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise ConfigError(f"{attribute.name}: must be >= 0, got {value!r}")


@attrs.frozen(slots=True, kw_only=True)
class FaucetConfig:
    """Everything the operator can set; the defaults suit a public testnet faucet."""

    host: str = "127.0.0.1"
    port: int = attrs.field(default=8080, validator=_non_negative)
    amount: int = attrs.field(default=WEI_PER_ETHER, validator=_positive)
    """Wei paid per claim (``amount = "1"`` in ether in the file)."""
    address_claims: int = attrs.field(default=1, validator=_positive)
    address_window: float = attrs.field(default=86_400.0, validator=_positive)
    """At most ``address_claims`` claims per address within ``address_window`` seconds."""
    ip_claims: int = attrs.field(default=3, validator=_positive)
    ip_window: float = attrs.field(default=86_400.0, validator=_positive)
    daily_cap: int = attrs.field(default=1_000 * WEI_PER_ETHER, validator=_positive)
    """Wei paid out per UTC day, all claims together."""
    proxy_count: int = attrs.field(default=0, validator=_non_negative)
    """Reverse proxies in front of the faucet that append to X-Forwarded-For (0: ignore it)."""
    database: str = "faucet.sqlite3"
    admin_token: str = ""
    """Bearer token for /api/admin/*; empty disables the admin endpoints."""
    pow_difficulty: int = attrs.field(default=0, validator=_non_negative)
    """Leading zero bits of sha256(challenge || nonce) a claim must show (0: no challenge)."""
    pow_ttl: float = attrs.field(default=300.0, validator=_positive)
    history_retention: float = attrs.field(default=30 * 86_400.0, validator=_positive)
    cleanup_interval: float = attrs.field(default=3_600.0, validator=_positive)
    max_in_flight: int = attrs.field(default=16, validator=_positive)
    """Payout transactions sent and not yet final (geth keeps 16 pending slots per sender)."""
    poll_interval: float = attrs.field(default=1.0, validator=_positive)
    rebroadcast_after: float = attrs.field(default=30.0, validator=_positive)
    stuck_after: float = attrs.field(default=600.0, validator=_positive)
    """A payout not final this long after signing is reported as stuck (and still re-sent)."""
    priority_fee: int = attrs.field(default=10**9, validator=_non_negative)
    gas_price_refresh: float = attrs.field(default=5.0, validator=_positive)
    max_body_bytes: int = attrs.field(default=4_096, validator=_positive)
    max_connections: int = attrs.field(default=256, validator=_positive)
    """Open HTTP connections at once; more are closed on accept."""
    blocked_addresses: tuple[str, ...] = ()
    blocked_ips: tuple[str, ...] = ()
    symbol: str = "ETH"
    """The token's name on the page."""
    explorer_url: str = ""
    """Optional link prefix for a transaction on the page (``{explorer_url}/tx/0x...``)."""

    def __attrs_post_init__(self) -> None:
        if self.amount > HARD_MAX_AMOUNT:
            raise ConfigError(
                f"amount: {self.amount / WEI_PER_ETHER} ether per claim is validator-sized; "
                f"a faucet pays at most {HARD_MAX_AMOUNT // WEI_PER_ETHER} ether"
            )
        if self.daily_cap < self.amount:
            raise ConfigError("daily_cap: must be at least one claim's amount")
        longest = max(self.address_window, self.ip_window, 86_400.0)
        if self.history_retention < longest:
            raise ConfigError(
                f"history_retention: must cover the longest limit window ({longest:g} s), "
                "or a cleanup would forget claims the limits still count"
            )
        if self.pow_difficulty > 32:
            raise ConfigError("pow_difficulty: at most 32 bits (a browser must solve it)")


_ETHER_KEYS = ("amount", "daily_cap", "priority_fee_gwei")


def load_config(path: str | Path | None, **overrides: Any) -> FaucetConfig:
    """Read the ``[faucet]`` table (no file: the defaults), then apply ``overrides`` (file
    spelling: ether strings for ``amount`` and ``daily_cap``; ``None`` values are skipped).

    Raises:
        ConfigError: unreadable file, unknown key or bad value.
    """
    table: dict[str, Any] = {}
    if path is not None:
        try:
            doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not TOML: {exc}") from None
        table = dict(doc.get("faucet", {}))
    table.update({k: v for k, v in overrides.items() if v is not None})
    known = {a.name for a in attrs.fields(FaucetConfig)}
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key in ("amount", "daily_cap"):
            kwargs[key] = parse_ether(value, key)
        elif key == "priority_fee_gwei":
            kwargs["priority_fee"] = parse_ether(value, key) // 10**9
        elif key in ("blocked_addresses", "blocked_ips"):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{key}: must be a list of strings")
            kwargs[key] = tuple(value)
        elif key in known:
            kwargs[key] = value
        else:
            raise ConfigError(f"unknown key [faucet].{key}")
    for key, value in kwargs.items():
        default = attrs.fields_dict(FaucetConfig)[key].default
        if isinstance(default, bool | int | float | str) and not isinstance(value, type(default)):
            if not (isinstance(default, float) and isinstance(value, int)):
                raise ConfigError(f"{key}: expected {type(default).__name__}, got {value!r}")
            kwargs[key] = float(value)
    try:
        return FaucetConfig(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None


def check_amount_against_stake(config: FaucetConfig, stakes: list[int]) -> None:
    """Refuse a claim amount that is a sizable part of a validator's stake.

    Raises:
        ConfigError: ``amount * STAKE_FRACTION`` reaches the smallest positive stake.
    """
    positive = [s for s in stakes if s > 0]
    if positive and config.amount * STAKE_FRACTION >= min(positive):
        raise ConfigError(
            f"amount: {config.amount} wei per claim is 1/{STAKE_FRACTION} or more of the smallest "
            f"validator stake ({min(positive)} wei); lower it"
        )
