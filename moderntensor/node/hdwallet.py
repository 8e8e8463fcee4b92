"""BIP-39 seeds and BIP-32/BIP-44 derivation: enough to reproduce Hardhat's and Anvil's dev keys.

Wallets and dev tools agree on "test test test test test test test test test test test junk"
at ``m/44'/60'/0'/0/i``; deriving the same keys lets a developer's MetaMask, Hardhat scripts
and ethers.js snippets work against a ModernTensor dev chain unchanged.

Only what that needs: the mnemonic is turned into a seed as BIP-39 says (PBKDF2-HMAC-SHA512,
2,048 rounds, salt "mnemonic" + passphrase, both NFKD-normalised) without checking its words
against the English list or its checksum (the seed does not depend on either); private
derivation only (hardened and normal steps), on secp256k1 through coincurve.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata

from moderntensor.crypto import PrivateKey

__all__ = [
    "DEV_MNEMONIC",
    "ETHEREUM_PATH_PREFIX",
    "HDWalletError",
    "derive_dev_keys",
    "derive_private_key",
    "mnemonic_to_seed",
    "parse_path",
]

DEV_MNEMONIC = "test test test test test test test test test test test junk"
"""Hardhat's and Anvil's default mnemonic: every key derived from it is public knowledge."""

ETHEREUM_PATH_PREFIX = "m/44'/60'/0'/0/"
"""BIP-44 path of Ethereum accounts (coin type 60, account 0, external chain); add the index."""

HARDENED = 0x8000_0000
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_WORD_COUNTS = (12, 15, 18, 21, 24)


class HDWalletError(ValueError):
    """A mnemonic, path or derivation step that cannot give a key."""


def mnemonic_to_seed(mnemonic: str, passphrase: str = "") -> bytes:
    """The 64-byte BIP-39 seed of a mnemonic.

    Raises:
        HDWalletError: the mnemonic does not have 12, 15, 18, 21 or 24 words.
    """
    words = unicodedata.normalize("NFKD", mnemonic).split()
    if len(words) not in _WORD_COUNTS:
        raise HDWalletError(f"a mnemonic has 12, 15, 18, 21 or 24 words, got {len(words)}")
    normalized = " ".join(words).encode("utf-8")
    salt = ("mnemonic" + unicodedata.normalize("NFKD", passphrase)).encode("utf-8")
    return hashlib.pbkdf2_hmac("sha512", normalized, salt, 2048)


def parse_path(path: str) -> list[int]:
    """``m/44'/60'/0'/0/3`` -> child indices, hardened ones with bit 31 set.

    Raises:
        HDWalletError: not ``m`` followed by ``/``-separated indices below 2**31
            (``'`` or ``h`` marks a hardened step).
    """
    parts = path.strip().split("/")
    if parts[0] != "m":
        raise HDWalletError(f"derivation path {path!r} must start with 'm'")
    out = []
    for part in parts[1:]:
        hardened = part.endswith(("'", "h", "H"))
        digits = part[:-1] if hardened else part
        if not digits.isdigit() or int(digits) >= HARDENED:
            raise HDWalletError(f"derivation path {path!r}: bad step {part!r}")
        out.append(int(digits) + (HARDENED if hardened else 0))
    return out


def _child(key: int, chain_code: bytes, index: int) -> tuple[int, bytes]:
    """BIP-32 CKDpriv: one private derivation step."""
    if index & HARDENED:
        data = b"\x00" + key.to_bytes(32, "big")
    else:
        data = PrivateKey(key.to_bytes(32, "big")).public_key_bytes
    digest = hmac.new(chain_code, data + index.to_bytes(4, "big"), hashlib.sha512).digest()
    tweak = int.from_bytes(digest[:32], "big")
    child = (tweak + key) % _SECP256K1_N
    if tweak >= _SECP256K1_N or child == 0:  # probability ~2**-127; BIP-32 says skip the index
        raise HDWalletError(f"index {index} gives no valid key; use the next one")
    return child, digest[32:]


def derive_private_key(seed: bytes, path: str) -> PrivateKey:
    """The key at ``path`` below the BIP-32 master key of ``seed``.

    Raises:
        HDWalletError: a bad path, or (astronomically unlikely) an invalid key on the way.
    """
    digest = hmac.new(b"Bitcoin seed", seed, hashlib.sha512).digest()
    key, chain_code = int.from_bytes(digest[:32], "big"), digest[32:]
    if not 0 < key < _SECP256K1_N:
        raise HDWalletError("the seed gives no valid master key")
    for index in parse_path(path):
        key, chain_code = _child(key, chain_code, index)
    return PrivateKey(key.to_bytes(32, "big"))


def derive_dev_keys(
    mnemonic: str = DEV_MNEMONIC, count: int = 10, *, start: int = 0, passphrase: str = ""
) -> list[PrivateKey]:
    """Keys ``m/44'/60'/0'/0/start`` .. ``start + count - 1``, as Hardhat and Anvil derive them.

    Raises:
        HDWalletError: a bad mnemonic.
    """
    seed = mnemonic_to_seed(mnemonic, passphrase)
    return [
        derive_private_key(seed, f"{ETHEREUM_PATH_PREFIX}{i}") for i in range(start, start + count)
    ]
