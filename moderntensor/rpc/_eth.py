"""The ``eth_*``, ``net_*`` and ``web3_*`` methods, with Ethereum's semantics and shapes.

State reads take a block tag, number or hash; an unknown block is an error for state reads
and ``null`` for block and transaction lookups, as in geth. Contract execution does not exist
yet, so ``eth_call`` answers plain transfers (empty return data) and rejects calls to code or
with data by name; ``eth_getLogs`` is always an empty, well-formed list.
"""

from __future__ import annotations

from typing import Any

from moderntensor.chain.constants import STAKING_ADDRESS
from moderntensor.chain.execution import (
    NO_CONTRACT_CALLS,
    NO_CONTRACT_CREATION,
    TransactionRejected,
    required_gas,
)
from moderntensor.chain.transactions import DynamicFeeTransaction
from moderntensor.codec import DecodeError
from moderntensor.crypto import checksum_address, keccak256
from moderntensor.service import ChainService
from moderntensor.state.trie import SecureTrie

from ._chainview import ChainView
from ._errors import INVALID_PARAMS, SERVER_ERROR, RpcError
from ._fees import FeeOracle
from ._format import format_block, format_receipt, format_transaction, hex_data
from ._methods import Method, Param
from ._params import (
    BlockRef,
    CallArgs,
    LogFilter,
    parse_address,
    parse_block_count,
    parse_block_id,
    parse_block_ref,
    parse_bool,
    parse_call_args,
    parse_data,
    parse_hash,
    parse_log_filter,
    parse_percentiles,
    parse_quantity,
    parse_storage_key,
    parse_storage_keys,
)

__all__ = ["EthApi"]

_NOT_SUPPORTED = "contract execution is not supported on this chain"


def _tag(name: str = "block") -> Param:
    return Param(name, parse_block_ref, required=False, default=BlockRef(id="latest"))


class EthApi:
    """Handlers over one chain service; :meth:`methods` is the dispatch table."""

    def __init__(self, service: ChainService, view: ChainView | None = None) -> None:
        self.service = service
        self.view = view if view is not None else ChainView(service)
        self.fees = FeeOracle(self.view)

    def methods(self) -> dict[str, Method]:
        address = Param("address", parse_address)
        return {
            "web3_clientVersion": Method(lambda: self.service.client_version),
            "web3_sha3": Method(lambda d: hex_data(keccak256(d)), (Param("data", parse_data),)),
            "net_version": Method(lambda: str(self.service.chain_id)),
            "net_listening": Method(lambda: True),
            "net_peerCount": Method(lambda: hex(self.service.peer_count())),
            "eth_chainId": Method(lambda: hex(self.service.chain_id)),
            "eth_syncing": Method(self.syncing),
            "eth_blockNumber": Method(lambda: hex(self.service.head.number)),
            "eth_accounts": Method(lambda: []),
            "eth_getBalance": Method(self.get_balance, (address, _tag())),
            "eth_getTransactionCount": Method(self.get_transaction_count, (address, _tag())),
            "eth_getCode": Method(self.get_code, (address, _tag())),
            "eth_getStorageAt": Method(
                self.get_storage_at, (address, Param("slot", parse_storage_key), _tag())
            ),
            "eth_getProof": Method(
                self.get_proof,
                (
                    address,
                    Param("storageKeys", parse_storage_keys),
                    Param("block", parse_block_ref),
                ),
            ),
            "eth_gasPrice": Method(lambda: hex(self.fees.gas_price())),
            "eth_baseFee": Method(lambda: hex(self.service.next_base_fee())),
            "eth_maxPriorityFeePerGas": Method(lambda: hex(self.fees.suggested_tip())),
            "eth_feeHistory": Method(
                self.fees.fee_history,
                (
                    Param("blockCount", parse_block_count),
                    Param("newestBlock", parse_block_id),
                    Param("rewardPercentiles", parse_percentiles, required=False, default=[]),
                ),
            ),
            "eth_estimateGas": Method(
                self.estimate_gas, (Param("transaction", parse_call_args), _tag())
            ),
            "eth_call": Method(self.call, (Param("transaction", parse_call_args), _tag())),
            "eth_sendRawTransaction": Method(
                self.send_raw_transaction, (Param("transaction", parse_data),)
            ),
            "eth_getTransactionByHash": Method(
                self.get_transaction_by_hash, (Param("hash", parse_hash),)
            ),
            "eth_getTransactionReceipt": Method(
                self.get_transaction_receipt, (Param("hash", parse_hash),)
            ),
            "eth_getBlockByNumber": Method(
                self.get_block_by_number,
                (Param("block", parse_block_id), Param("hydrated", parse_bool)),
            ),
            "eth_getBlockByHash": Method(
                self.get_block_by_hash,
                (Param("hash", parse_hash), Param("hydrated", parse_bool)),
            ),
            "eth_getBlockTransactionCountByNumber": Method(
                self.get_block_tx_count_by_number, (Param("block", parse_block_id),)
            ),
            "eth_getBlockTransactionCountByHash": Method(
                self.get_block_tx_count_by_hash, (Param("hash", parse_hash),)
            ),
            "eth_getTransactionByBlockNumberAndIndex": Method(
                self.get_tx_by_number_and_index,
                (Param("block", parse_block_id), Param("index", parse_quantity)),
            ),
            "eth_getTransactionByBlockHashAndIndex": Method(
                self.get_tx_by_hash_and_index,
                (Param("hash", parse_hash), Param("index", parse_quantity)),
            ),
            "eth_getBlockReceipts": Method(
                self.get_block_receipts, (Param("block", parse_block_ref),)
            ),
            "eth_getLogs": Method(self.get_logs, (Param("filter", parse_log_filter),)),
        }

    # -- chain ----------------------------------------------------------------------------

    def syncing(self) -> Any:
        progress = self.service.sync_progress
        if progress is None:
            return False
        return {
            "startingBlock": hex(progress.starting),
            "currentBlock": hex(progress.current),
            "highestBlock": hex(progress.highest),
        }

    # -- state ----------------------------------------------------------------------------

    def get_balance(self, address: bytes, ref: BlockRef) -> str:
        header = self.view.header_for_ref(ref)
        return hex(self.service.state_at(header).get_balance(address))

    def get_transaction_count(self, address: bytes, ref: BlockRef) -> str:
        if ref.id == "pending":
            return hex(self.service.pending_nonce(address))
        header = self.view.header_for_ref(ref)
        return hex(self.service.state_at(header).get_nonce(address))

    def get_code(self, address: bytes, ref: BlockRef) -> str:
        header = self.view.header_for_ref(ref)
        return hex_data(self.service.state_at(header).get_code(address))

    def get_storage_at(self, address: bytes, slot: bytes, ref: BlockRef) -> str:
        header = self.view.header_for_ref(ref)
        return hex_data(_word(self.service.state_at(header).get_storage(address, slot)))

    def get_proof(self, address: bytes, keys: list[bytes], ref: BlockRef) -> dict[str, Any]:
        header = self.view.header_for_ref(ref)
        db = self.service.node_reader(header)
        account = self.service.state_at(header).get_account(address)
        account_proof = SecureTrie(db, header.state_root).prove(address)
        storage = SecureTrie(db, account.storage_root)
        storage_proof = []
        for key in keys:
            raw = storage.get(key) or b""
            storage_proof.append(
                {
                    "key": hex_data(key),
                    "value": hex(int.from_bytes(_word(raw), "big")),
                    "proof": [hex_data(node) for node in storage.prove(key)],
                }
            )
        return {
            "address": checksum_address(address),
            "accountProof": [hex_data(node) for node in account_proof],
            "balance": hex(account.balance),
            "codeHash": hex_data(account.code_hash),
            "nonce": hex(account.nonce),
            "storageHash": hex_data(account.storage_root),
            "storageProof": storage_proof,
        }

    # -- execution ------------------------------------------------------------------------

    def _check_call(self, args: CallArgs, ref: BlockRef) -> int:
        """What a plain transfer or staking operation would cost in gas; rejects the rest."""
        if args.to is None:
            raise RpcError(SERVER_ERROR, NO_CONTRACT_CREATION)
        header = self.view.header_for_ref(ref)
        state = self.service.state_at(header)
        if state.get_code(args.to):
            raise RpcError(
                SERVER_ERROR, f"{_NOT_SUPPORTED}: {checksum_address(args.to)} holds code"
            )
        if args.data and args.to != STAKING_ADDRESS:
            raise RpcError(SERVER_ERROR, NO_CONTRACT_CALLS)
        gas = required_gas(
            DynamicFeeTransaction(
                chain_id=self.service.chain_id,
                nonce=0,
                max_priority_fee_per_gas=0,
                max_fee_per_gas=0,
                gas=0,
                to=args.to,
                value=args.value,
                data=args.data,
            )
        )
        if args.gas is not None and args.gas < gas:
            raise RpcError(SERVER_ERROR, f"intrinsic gas too low: have {args.gas}, want {gas}")
        if args.sender is not None:
            price = args.max_fee_per_gas or args.gas_price or 0
            cost = args.value + price * (args.gas if args.gas is not None else gas)
            balance = state.get_balance(args.sender)
            if balance < cost:
                raise RpcError(
                    SERVER_ERROR,
                    "insufficient funds for gas * price + value: address "
                    f"{checksum_address(args.sender)} have {balance} want {cost}",
                )
        return gas

    def estimate_gas(self, args: CallArgs, ref: BlockRef) -> str:
        return hex(self._check_call(args, ref))

    def call(self, args: CallArgs, ref: BlockRef) -> str:
        self._check_call(args, ref)
        return "0x"

    def send_raw_transaction(self, raw: bytes) -> str:
        try:
            tx_hash = self.service.submit_raw_transaction(raw)
        except DecodeError as exc:
            raise RpcError(INVALID_PARAMS, f"invalid argument 0 (transaction): {exc}") from None
        except TransactionRejected as exc:
            raise RpcError(SERVER_ERROR, exc.message) from None
        return hex_data(tx_hash)

    # -- transactions and receipts ---------------------------------------------------------

    def get_transaction_by_hash(self, tx_hash: bytes) -> dict[str, Any] | None:
        found = self.view.committed_transaction(tx_hash)
        if found is not None:
            tx, header, index = found
            return format_transaction(tx, header.hash, header.number, index, header)
        pending = self.view.pending_transaction(tx_hash)
        return None if pending is None else format_transaction(pending)

    def get_transaction_receipt(self, tx_hash: bytes) -> dict[str, Any] | None:
        found = self.view.committed_transaction(tx_hash)
        if found is None:
            return None
        tx, header, index = found
        receipts = self.view.receipts(header)
        if index >= len(receipts):
            return None
        return format_receipt(receipts[index], tx, header, index)

    def get_block_receipts(self, ref: BlockRef) -> list[dict[str, Any]] | None:
        if ref.hash is not None:
            header = self.service.header_by_hash(ref.hash)
        else:
            header = self.view.header("latest" if ref.id is None else ref.id)
        if header is None:
            return None
        block = self.view.block(header)
        if block is None:
            return None
        receipts = self.view.receipts(header)
        return [
            format_receipt(r, tx, header, i)
            for i, (tx, r) in enumerate(zip(block.transactions, receipts, strict=False))
        ]

    # -- blocks ---------------------------------------------------------------------------

    def get_block_by_number(self, block_id: str | int, full: bool) -> dict[str, Any] | None:
        header = self.view.header(block_id)
        block = None if header is None else self.view.block(header)
        return None if block is None else format_block(block, full)

    def get_block_by_hash(self, block_hash: bytes, full: bool) -> dict[str, Any] | None:
        block = self.view.block_by_hash(block_hash)
        return None if block is None else format_block(block, full)

    def get_block_tx_count_by_number(self, block_id: str | int) -> str | None:
        header = self.view.header(block_id)
        block = None if header is None else self.view.block(header)
        return None if block is None else hex(len(block.transactions))

    def get_block_tx_count_by_hash(self, block_hash: bytes) -> str | None:
        block = self.view.block_by_hash(block_hash)
        return None if block is None else hex(len(block.transactions))

    def get_tx_by_number_and_index(self, block_id: str | int, index: int) -> Any:
        header = self.view.header(block_id)
        block = None if header is None else self.view.block(header)
        if block is None or index >= len(block.transactions):
            return None
        return format_transaction(
            block.transactions[index], block.hash, block.number, index, block.header
        )

    def get_tx_by_hash_and_index(self, block_hash: bytes, index: int) -> Any:
        block = self.view.block_by_hash(block_hash)
        if block is None or index >= len(block.transactions):
            return None
        return format_transaction(
            block.transactions[index], block.hash, block.number, index, block.header
        )

    # -- logs -----------------------------------------------------------------------------

    def get_logs(self, flt: LogFilter) -> list[Any]:
        """Always empty (no contracts, no logs), after the filter is checked like geth does."""
        if flt.block_hash is not None:
            if self.service.header_by_hash(flt.block_hash) is None:
                raise RpcError(SERVER_ERROR, "unknown block")
            return []
        start = self.view.header(flt.from_block)
        end = self.view.header(flt.to_block)
        if start is not None and end is not None and start.number > end.number:
            raise RpcError(SERVER_ERROR, "invalid block range params")
        return []


def _word(raw: bytes) -> bytes:
    """A storage value as a 32-byte word: shorter values are left-padded; longer ones (the
    staking records, RLP lists) are shown by their first 32 bytes (mt_validators has them)."""
    return raw.rjust(32, b"\x00") if len(raw) <= 32 else raw[:32]
