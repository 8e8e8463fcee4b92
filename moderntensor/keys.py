"""Key files for nodes and validators: JSON, written with mode 0600, read with clear errors.

A *node key* identifies a node on the network (its peer id is the hex of its compressed public
key, so a peer can check a handshake signature with nothing else). A *validator key file* holds
two keys: the account key that owns the stake and receives rewards, and the consensus key that
signs proposals and votes (its address is the validator id).

Keys are stored unencrypted, protected by file permissions, as testnet tooling does; keep them
off shared machines.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import attrs

from moderntensor.crypto import PrivateKey, checksum_address

__all__ = [
    "KeyFileError",
    "NodeKey",
    "ValidatorKeys",
    "load_node_key",
    "load_or_create_node_key",
    "load_validator_keys",
    "peer_id_of",
    "write_key_file",
]


class KeyFileError(ValueError):
    """A key file that is missing, unreadable or malformed; the message names the file."""


@attrs.frozen(slots=True)
class NodeKey:
    key: PrivateKey

    @property
    def peer_id(self) -> str:
        return peer_id_of(self.key)

    def to_json(self, private: bool = True) -> dict[str, Any]:
        doc: dict[str, Any] = {"kind": "node", "peer_id": self.peer_id}
        if private:
            doc["private_key"] = "0x" + self.key.secret.hex()
        return doc


@attrs.frozen(slots=True)
class ValidatorKeys:
    name: str
    account: PrivateKey
    consensus: PrivateKey

    def to_json(self, private: bool = True) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "kind": "validator",
            "name": self.name,
            "address": checksum_address(self.account.address),
            "validator_id": checksum_address(self.consensus.address),
            "consensus_pubkey": "0x" + self.consensus.public_key_bytes.hex(),
        }
        if private:
            doc["private_key"] = "0x" + self.account.secret.hex()
            doc["consensus_private_key"] = "0x" + self.consensus.secret.hex()
        return doc


def peer_id_of(key: PrivateKey) -> str:
    return key.public_key_bytes.hex()


def write_key_file(path: str | Path, doc: dict[str, Any]) -> None:
    """Write JSON readable only by the owner (created 0600 before any secret is written).

    Raises:
        KeyFileError: the file exists already (keys are never overwritten) or cannot be written.
    """
    target = Path(path)
    if target.is_dir():
        raise KeyFileError(f"{target}: is a directory; give the key file to create")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{target}: already exists; refusing to overwrite a key") from None
    except OSError as exc:
        raise KeyFileError(f"{target}: cannot write: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(doc, handle, indent=2)
        handle.write("\n")


def _read(path: str | Path, kind: str) -> dict[str, Any]:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KeyFileError(f"{path}: key file not found") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise KeyFileError(f"{path}: not a UTF-8 text file (expected a JSON key file)") from None
    except json.JSONDecodeError as exc:
        raise KeyFileError(f"{path}: not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("kind") != kind:
        found = doc.get("kind") if isinstance(doc, dict) else None
        raise KeyFileError(f"{path}: expected a {kind} key file, found kind={found!r}")
    return doc


def _key(doc: dict[str, Any], field: str, path: str | Path) -> PrivateKey:
    text = doc.get(field)
    if not isinstance(text, str):
        raise KeyFileError(f"{path}: missing {field}")
    try:
        return PrivateKey.from_hex(text)
    except ValueError as exc:
        raise KeyFileError(f"{path}: {field}: {exc}") from None


def load_node_key(path: str | Path) -> NodeKey:
    """Raises: KeyFileError."""
    return NodeKey(_key(_read(path, "node"), "private_key", path))


def load_or_create_node_key(path: str | Path) -> tuple[NodeKey, bool]:
    """The node key at ``path``, or a new one written there (mode 0600) if none exists.

    Returns:
        The key, and whether it was created now.

    Raises:
        KeyFileError: the file exists but does not load, or cannot be written.
    """
    if Path(path).exists():
        return load_node_key(path), False
    key = NodeKey(PrivateKey.generate())
    write_key_file(path, key.to_json())
    return key, True


def load_validator_keys(path: str | Path) -> ValidatorKeys:
    """Raises: KeyFileError (also when the stored public parts disagree with the keys)."""
    doc = _read(path, "validator")
    keys = ValidatorKeys(
        str(doc.get("name", "")),
        _key(doc, "private_key", path),
        _key(doc, "consensus_private_key", path),
    )
    public = keys.to_json(private=False)
    for field in ("address", "consensus_pubkey"):
        if field in doc and str(doc[field]).lower() != str(public[field]).lower():
            raise KeyFileError(f"{path}: {field} does not match the private key")
    return keys
