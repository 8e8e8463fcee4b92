"""Genesis allocations in geth's format: parsing, and the state (and root) they give.

Shared by the genesis file (its ``alloc``) and ``moderntensor genesis alloc-root``, which checks
an allocation on its own against Ethereum networks' published state roots.
"""

from __future__ import annotations

from typing import Any

import attrs

from moderntensor.codec import encode_rlp, encode_uint
from moderntensor.crypto import parse_address
from moderntensor.state.statedb import StateDB
from moderntensor.state.trie import MemoryNodeStore

__all__ = [
    "GenesisAccount",
    "GenesisError",
    "alloc_state_root",
    "apply_alloc",
    "parse_alloc",
    "parse_quantity",
]


class GenesisError(ValueError):
    """An invalid genesis file; ``errors`` lists every problem, each naming its field."""

    def __init__(self, errors: list[str], source: str = "genesis") -> None:
        self.errors = errors
        self.source = source
        if len(errors) == 1:  # one problem, one line (what an operator sees on stderr)
            super().__init__(f"{source}: {errors[0]}")
        else:
            super().__init__(f"{source}: {len(errors)} errors:\n  " + "\n  ".join(errors))


@attrs.frozen(slots=True)
class GenesisAccount:
    balance: int
    nonce: int = 0
    code: bytes = b""
    storage: tuple[tuple[bytes, int], ...] = ()


class _Errors:
    """Collects problems so validation can report all of them at once."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, field: str, problem: str) -> None:
        self.items.append(f"{field}: {problem}")


def _int(doc: Any, key: str, field: str, errs: _Errors, *, minimum: int = 0) -> int:
    if not isinstance(doc, dict) or key not in doc:
        errs.add(field, "missing")
        return 0
    value = parse_quantity(doc[key], field, errs)
    if value is not None and value < minimum:
        errs.add(field, f"must be at least {minimum}, got {value}")
    return value or 0


def parse_quantity(raw: Any, field: str, errs: _Errors) -> int | None:
    """An integer from a JSON int, a decimal string or a 0x-hex string."""
    if isinstance(raw, bool):
        errs.add(field, "expected an integer, got a boolean")
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str):
        text = raw.strip()
        try:
            if text.lower().startswith("0x"):
                return int(text[2:] or "0", 16)
            return int(text, 10)
        except ValueError:
            pass
    errs.add(field, f"expected an integer (number, decimal or 0x-hex string), got {raw!r}")
    return None


def _check_keys(doc: dict[str, Any], allowed: set[str], where: str, errs: _Errors) -> None:
    for key in sorted(set(doc) - allowed):
        errs.add(f"{where}{key}", "unknown key")


def parse_alloc(raw: Any, errs: _Errors) -> list[tuple[bytes, GenesisAccount]]:
    """Accounts in geth's alloc format; a bare balance string is accepted too.

    Addresses may lack 0x (as in ethereum/tests); entries keep the file's order, and duplicates
    (the same address in two spellings) are errors.
    """
    if not isinstance(raw, dict):
        errs.add("alloc", "not an object")
        return []
    out: list[tuple[bytes, GenesisAccount]] = []
    seen: set[bytes] = set()
    for key, entry in raw.items():
        where = f"alloc[{key}]"
        text = key if key.lower().startswith("0x") else "0x" + key
        try:
            address = parse_address(text)
        except ValueError as exc:
            errs.add(where, str(exc))
            continue
        if address in seen:
            errs.add(where, "duplicate address")
            continue
        seen.add(address)
        if isinstance(entry, str | int):
            entry = {"balance": entry}
        if not isinstance(entry, dict):
            errs.add(where, "expected an object with balance")
            continue
        _check_keys(entry, {"balance", "wei", "nonce", "code", "storage"}, f"{where}.", errs)
        balance_key = "balance" if "balance" in entry else "wei"
        balance = _int(entry, balance_key, f"{where}.balance", errs) if balance_key in entry else 0
        nonce = _int(entry, "nonce", f"{where}.nonce", errs) if "nonce" in entry else 0
        code = b""
        if entry.get("code"):
            try:
                code = bytes.fromhex(str(entry["code"]).removeprefix("0x"))
            except ValueError:
                errs.add(f"{where}.code", "not hex")
        storage: list[tuple[bytes, int]] = []
        slots = entry.get("storage") or {}
        if not isinstance(slots, dict):
            errs.add(f"{where}.storage", "not an object")
            slots = {}
        for slot_text, value_text in slots.items():
            slot = parse_quantity(slot_text, f"{where}.storage[{slot_text}]", errs)
            value = parse_quantity(value_text, f"{where}.storage[{slot_text}]", errs)
            if slot is not None and value is not None and slot < 2**256 and value < 2**256:
                storage.append((slot.to_bytes(32, "big"), value))
        out.append((address, GenesisAccount(balance, nonce, code, tuple(storage))))
    return out


def apply_alloc(state: StateDB, alloc: tuple[tuple[bytes, GenesisAccount], ...]) -> None:
    """Write allocated accounts (with code and storage where given) into ``state``."""
    for address, account in alloc:
        state.create_account(address)
        if account.balance:
            state.add_balance(address, account.balance)
        if account.nonce:
            state.set_nonce(address, account.nonce)
        if account.code:
            state.set_code(address, account.code)
        for slot, value in account.storage:
            if value:
                state.set_storage(address, slot, _rlp_uint(value))


def _rlp_uint(value: int) -> bytes:
    return encode_rlp(encode_uint(value))


def alloc_state_root(doc: Any, source: str = "alloc") -> bytes:
    """The Ethereum state root of a geth-style allocation on its own.

    ``doc`` is a geth genesis (its ``alloc``, plus ``alloc_with_code`` if present, as in
    ../shared/vectors) or a bare ``{address: account}`` map.

    Raises:
        GenesisError: with every malformed entry.
    """
    errs = _Errors()
    if isinstance(doc, dict) and isinstance(doc.get("alloc"), dict):
        merged = dict(doc["alloc"])
        extra = doc.get("alloc_with_code")
        if isinstance(extra, dict):
            merged.update(extra)
    else:
        merged = doc
    accounts = parse_alloc(merged, errs)
    if errs.items:
        raise GenesisError(errs.items, source)
    state = StateDB(MemoryNodeStore())
    apply_alloc(state, tuple(accounts))
    return state.commit().root
