"""State: the Merkle Patricia trie, proofs, accounts, the StateDB and the RocksDB store."""

from moderntensor.state.account import (
    EMPTY_CODE_HASH,
    Account,
    decode_account,
    encode_account,
)
from moderntensor.state.proof import InvalidProof, verify_proof
from moderntensor.state.statedb import StateCommit, StateDB
from moderntensor.state.store import Column, Database, DatabaseError, WriteBatch
from moderntensor.state.trie import (
    EMPTY_ROOT,
    CorruptTrieNode,
    HexaryTrie,
    MemoryNodeStore,
    MissingTrieNode,
    NodeReader,
    SecureTrie,
    ordered_trie_root,
)

__all__ = [
    "EMPTY_CODE_HASH",
    "EMPTY_ROOT",
    "Account",
    "Column",
    "CorruptTrieNode",
    "Database",
    "DatabaseError",
    "HexaryTrie",
    "InvalidProof",
    "MemoryNodeStore",
    "MissingTrieNode",
    "NodeReader",
    "SecureTrie",
    "StateCommit",
    "StateDB",
    "WriteBatch",
    "decode_account",
    "encode_account",
    "ordered_trie_root",
    "verify_proof",
]
