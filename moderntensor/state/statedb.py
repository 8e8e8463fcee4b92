"""The world state of one block: accounts and storage over secure tries, with a journal.

Why this shape: a block's changes stay in plain dicts until :meth:`StateDB.commit`, so the trie
is touched (and hashed) once per block, not once per update; the journal lets one failing
transaction be undone without copying the state.
"""

from __future__ import annotations

from typing import cast

import attrs

from moderntensor.crypto import keccak256
from moderntensor.state.account import (
    EMPTY_ACCOUNT,
    EMPTY_CODE_HASH,
    EMPTY_ROOT,
    Account,
    decode_account,
    encode_account,
)
from moderntensor.state.trie import NodeReader, SecureTrie

__all__ = ["StateCommit", "StateDB"]

# The journal is flat, two items per change (no tuple per entry: a block journals tens of
# thousands of changes, and each tuple would outlive young garbage collections):
# ``address, previous account`` or ``(address, slot), previous storage value``.
_JournalItem = bytes | Account | tuple[bytes, bytes]


@attrs.frozen(slots=True)
class StateCommit:
    """The outcome of a commit: the new state root and the trie nodes (and code) to persist."""

    root: bytes
    nodes: dict[bytes, bytes]


class StateDB:
    """Mutable view of the state at ``root``; reads fall through to the node store lazily.

    Not thread-safe; one block executes against one StateDB at a time.
    """

    def __init__(self, db: NodeReader, root: bytes = EMPTY_ROOT) -> None:
        self._db = db
        self._trie = SecureTrie(db, root)
        self._accounts: dict[bytes, Account] = {}
        self._dirty_accounts: dict[bytes, None] = {}  # an ordered set
        self._storage_tries: dict[bytes, SecureTrie] = {}
        self._storage: dict[bytes, dict[bytes, bytes]] = {}
        self._dirty_storage: dict[bytes, dict[bytes, None]] = {}
        self._new_code: dict[bytes, bytes] = {}
        self._journal: list[_JournalItem] = []
        self._pending_nodes: dict[bytes, bytes] = {}  # storage-trie nodes flushed by `root`
        self._keep_empty: set[bytes] = set()  # genesis accounts exist even when empty

    # -- accounts -------------------------------------------------------------------------

    def get_account(self, address: bytes) -> Account:
        account = self._accounts.get(address)
        if account is None:
            raw = self._trie.get(address)
            account = EMPTY_ACCOUNT if raw is None else decode_account(raw)
            self._accounts[address] = account
        return account

    def set_account(self, address: bytes, account: Account) -> None:
        journal = self._journal
        journal.append(address)
        journal.append(self.get_account(address))
        self._accounts[address] = account
        self._dirty_accounts[address] = None

    def create_account(self, address: bytes) -> None:
        """Make the account exist even if it stays empty (genesis allocations do this:
        Ethereum's genesis state contains zero-balance allocated accounts)."""
        self._keep_empty.add(address)
        self.set_account(address, self.get_account(address))

    def get_balance(self, address: bytes) -> int:
        return self.get_account(address).balance

    def get_nonce(self, address: bytes) -> int:
        return self.get_account(address).nonce

    def add_balance(self, address: bytes, amount: int) -> None:
        if amount < 0:
            raise ValueError(f"cannot add a negative amount {amount}")
        a = self.get_account(address)
        self.set_account(address, Account(a.nonce, a.balance + amount, a.storage_root, a.code_hash))

    def sub_balance(self, address: bytes, amount: int) -> None:
        """Debit an account.

        Raises:
            ValueError: the balance is below ``amount`` (callers check first; this is a guard).
        """
        account = self.get_account(address)
        if amount < 0 or account.balance < amount:
            raise ValueError(f"cannot debit {amount} from a balance of {account.balance}")
        a = account
        self.set_account(address, Account(a.nonce, a.balance - amount, a.storage_root, a.code_hash))

    def set_nonce(self, address: bytes, nonce: int) -> None:
        a = self.get_account(address)
        self.set_account(address, Account(nonce, a.balance, a.storage_root, a.code_hash))

    def set_code(self, address: bytes, code: bytes) -> None:
        """Install code (genesis allocations only: the node does not execute code)."""
        code_hash = keccak256(code) if code else EMPTY_CODE_HASH
        if code:
            self._new_code[code_hash] = code
        self.set_account(address, attrs.evolve(self.get_account(address), code_hash=code_hash))

    def get_code(self, address: bytes) -> bytes:
        code_hash = self.get_account(address).code_hash
        if code_hash == EMPTY_CODE_HASH:
            return b""
        return self._new_code.get(code_hash) or self._db.get_node(code_hash) or b""

    # -- storage --------------------------------------------------------------------------

    def _storage_trie(self, address: bytes) -> SecureTrie:
        trie = self._storage_tries.get(address)
        if trie is None:
            trie = SecureTrie(self._db, self.get_account(address).storage_root)
            self._storage_tries[address] = trie
        return trie

    def get_storage(self, address: bytes, key: bytes) -> bytes:
        """The raw value at a 32-byte storage key, b'' when unset."""
        slots = self._storage.setdefault(address, {})
        value = slots.get(key)
        if value is None:
            value = self._storage_trie(address).get(key) or b""
            slots[key] = value
        return value

    def set_storage(self, address: bytes, key: bytes, value: bytes) -> None:
        """Write a raw value at a 32-byte key; b'' deletes the slot."""
        if len(key) != 32:
            raise ValueError(f"storage key must be 32 bytes, got {len(key)}")
        previous = self.get_storage(address, key)
        self._journal.append((address, key))
        self._journal.append(previous)
        self._storage[address][key] = value
        self._dirty_storage.setdefault(address, {})[key] = None
        # Touch the account so its storage root is rewritten on commit.
        self._dirty_accounts[address] = None

    # -- journal --------------------------------------------------------------------------

    def snapshot(self) -> int:
        """A mark to :meth:`revert` to; valid until the next commit."""
        return len(self._journal)

    def revert(self, mark: int) -> None:
        """Undo every change made since ``mark`` (dirty flags stay: rewriting is harmless)."""
        journal = self._journal
        while len(journal) > mark:
            previous = journal.pop()
            where = journal.pop()
            if type(where) is tuple:
                address, key = where
                self._storage[address][key] = cast(bytes, previous)
            else:
                self._accounts[cast(bytes, where)] = cast(Account, previous)

    # -- hashing and commit ---------------------------------------------------------------

    def _flush(self) -> dict[bytes, bytes]:
        """Push dirty values into the tries; returns the storage tries' new nodes."""
        nodes: dict[bytes, bytes] = {}
        for address, keys in self._dirty_storage.items():
            trie = self._storage_trie(address)
            slots = self._storage[address]
            for key in keys:
                trie.set(key, slots[key])
            nodes.update(trie.commit())
            account = self.get_account(address)
            root = trie.root_hash
            if account.storage_root != root:
                self._accounts[address] = attrs.evolve(account, storage_root=root)
        self._dirty_storage.clear()
        trie = self._trie
        for address in self._dirty_accounts:
            account = self._accounts[address]
            if account.is_empty and address not in self._keep_empty:
                trie.delete(address)
            else:
                trie.set(address, encode_account(account))
        self._dirty_accounts.clear()
        self._journal.clear()
        return nodes

    @property
    def root(self) -> bytes:
        """The state root including uncommitted changes (ends the journal's validity)."""
        self._pending_nodes.update(self._flush())
        return self._trie.root_hash

    def commit(self) -> StateCommit:
        """Hash every change once and hand back the nodes to write in the block's batch."""
        nodes = self._pending_nodes
        nodes.update(self._flush())
        nodes.update(self._trie.commit())
        nodes.update(self._new_code)
        self._pending_nodes = {}
        self._new_code = {}
        return StateCommit(self._trie.root_hash, nodes)
