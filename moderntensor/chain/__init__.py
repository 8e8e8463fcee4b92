"""The chain: transactions, blocks, receipts, genesis, staking, execution and block import.

Layer 3 (DESIGN.md §2): it imports crypto, codec and state, never consensus, mempool or I/O.
"""

from moderntensor.chain.blocks import Block, Header, decode_block, decode_header, encode_block
from moderntensor.chain.chain import Chain, ChainMismatch, ExecutedBlock, InvalidBlock
from moderntensor.chain.chaindb import ChainDB
from moderntensor.chain.execution import (
    BlockEnv,
    ChainParams,
    TransactionRejected,
    check_transaction,
    compute_next_base_fee,
)
from moderntensor.chain.genesis import (
    Genesis,
    GenesisError,
    alloc_state_root,
    build_genesis,
    load_genesis,
    parse_genesis,
)
from moderntensor.chain.receipts import Receipt
from moderntensor.chain.staking import StakingOp, encode_staking_op, get_validators
from moderntensor.chain.transactions import (
    AccessListTransaction,
    DynamicFeeTransaction,
    LegacyTransaction,
    Transaction,
    TransactionInvalid,
    decode_transaction,
    intrinsic_gas,
    sign_transaction,
)
from moderntensor.chain.validators import ValidatorRecord

__all__ = [
    "AccessListTransaction",
    "Block",
    "BlockEnv",
    "Chain",
    "ChainDB",
    "ChainMismatch",
    "ChainParams",
    "DynamicFeeTransaction",
    "ExecutedBlock",
    "Genesis",
    "GenesisError",
    "Header",
    "InvalidBlock",
    "LegacyTransaction",
    "Receipt",
    "StakingOp",
    "Transaction",
    "TransactionInvalid",
    "TransactionRejected",
    "ValidatorRecord",
    "alloc_state_root",
    "build_genesis",
    "check_transaction",
    "compute_next_base_fee",
    "decode_block",
    "decode_header",
    "decode_transaction",
    "encode_block",
    "encode_staking_op",
    "get_validators",
    "intrinsic_gas",
    "load_genesis",
    "parse_genesis",
    "sign_transaction",
]
