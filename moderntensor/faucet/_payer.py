"""Payouts: sign, record, send, watch to finality, re-send, recover after a crash.

Nonces. The faucet is the only spender of its key (a second spender is tolerated, see below).
It reads ``eth_getTransactionCount(faucet, "pending")`` once and counts locally from there.
Signing, recording and sending happen under one lock in nonce order, so the node never sees a
gap unless a send is lost; up to ``max_in_flight`` payouts are sent and not yet final at once
(a claim waits for room). Write-ahead: the signed bytes, hash and nonce are committed to the
store (``signed``) before they are sent.

Send outcomes. Accepted or ``already known``: ``sent``. ``nonce too low`` or ``replacement
transaction underpriced`` on a transaction we just signed: another transaction took the nonce
(someone else spends from the key), so ours can never be included; resync the counter and
sign again with a fresh nonce (at most ``_RESIGN_ATTEMPTS`` times). Any other rejection
(``insufficient funds``...): the nonce was not used, the counter is resynced and the claim is
``failed`` (503 to the claimant, counted in the statistics, not against the limits). The
node unreachable: the claim stays ``signed`` and the watcher re-sends the same bytes.

Races. Only an ``accepted`` claim is signed, and a re-sign asked for hash H happens only if
the claim still holds H, both checked under the lock: two tasks never both sign one claim.
The watcher also leaves alone the claims a claimant is waiting for and those being signed.

Watching. Every ``poll_interval`` each active claim's receipt is looked up; once its block is
at or below the node's ``finalized`` block the claim is ``final`` (a reverted receipt is
``failed``). A payout without a receipt after ``rebroadcast_after`` is re-sent (same bytes,
same hash: it cannot pay twice); one not final ``stuck_after`` seconds after signing is
reported in the log and the statistics and still re-sent. If a re-send meets ``nonce too
low`` and there is still no receipt for our hash, that nonce went to another transaction: the
claim is signed again with a fresh nonce, recorded before it is sent.

Recovery (start). Claims left ``signed``/``sent`` are re-sent (same bytes) or found included;
claims left ``accepted`` (crash before signing) are signed and sent, and if the node cannot
be asked they stay ``accepted`` for the watcher to sign later (nobody waits for them, so
they are never failed for a node outage). The counter starts at
``max(pending count, highest recorded active nonce + 1)``. So after a kill -9 at any point a
claim is paid exactly once: never twice (one signed transaction per nonce, re-sent verbatim)
and never lost (every accepted claim is resumed).
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from typing import Any

import trio

from moderntensor.chain.transactions import DynamicFeeTransaction, sign_transaction
from moderntensor.crypto import PrivateKey, parse_address
from moderntensor.faucet._config import FaucetConfig
from moderntensor.faucet._rpc import NodeError, NodeUnavailable, RpcClient
from moderntensor.faucet._store import ClaimRow, Store
from moderntensor.node._logging import event

__all__ = ["CRASH_ENV", "Payer", "PayoutFailed"]

log = logging.getLogger("moderntensor.faucet")

CRASH_ENV = "MODERNTENSOR_FAUCET_CRASH"
"""Test hook: ``after-accept``, ``after-sign`` or ``after-send`` makes the process SIGKILL
itself right there (the claim recorded; then its payout signed and recorded; then sent)."""
TRANSFER_GAS = 21_000
ROOM_TIMEOUT = 60.0
_RESIGN_ATTEMPTS = 3


class PayoutFailed(Exception):
    """The node refused the payout for a reason re-signing cannot fix (or is unreachable)."""


def _crash_point(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _is_known(message: str) -> bool:
    return "already known" in message


def _is_nonce_taken(message: str) -> bool:
    """Another transaction holds the nonce: mined (``nonce too low``) or waiting in the pool
    with a higher fee (``replacement transaction underpriced``; ours is never the holder,
    since a resync never reuses an active nonce of ours)."""
    return "nonce too low" in message or "replacement transaction underpriced" in message


class Payer:
    """Owns the nonce counter and the in-flight budget; one per faucet process."""

    def __init__(
        self,
        config: FaucetConfig,
        key: PrivateKey,
        rpc: RpcClient,
        store: Store,
        chain_id: int,
        clock: Callable[[], float],
    ) -> None:
        self.config = config
        self.key = key
        self.address_hex = "0x" + key.address.hex()
        self.rpc = rpc
        self.store = store
        self.chain_id = chain_id
        self.clock = clock
        self.lock = trio.Lock()
        self.next_nonce: int | None = None
        self.in_flight = 0
        self._stuck: set[int] = set()
        self.resigned = 0
        self.nonce_resyncs = 0
        self._room = trio.Event()
        self._sending: set[int] = set()
        """Claims inside _sign_and_send: the watcher leaves them alone."""
        self._claiming: set[int] = set()
        """Claims a claimant waits for (in ``pay``): not the watcher's to sign."""
        self._gas_price: tuple[float, int] | None = None

    # -- claim path ----------------------------------------------------------------------

    async def pay(self, claim_id: int) -> str:
        """Sign and send the payout of an ``accepted`` claim; returns its tx hash.

        Raises:
            PayoutFailed: refused by the node or no room within ROOM_TIMEOUT (the claim is
                then ``failed``).
        """
        self._claiming.add(claim_id)
        try:
            with trio.fail_after(ROOM_TIMEOUT):
                while self.in_flight >= self.config.max_in_flight:
                    await self._room.wait()
        except trio.TooSlowError:
            self._claiming.discard(claim_id)
            self.store.set_failed(claim_id, "faucet busy")
            raise PayoutFailed("the faucet is busy; try again in a minute") from None
        self.in_flight += 1
        _crash_point("after-accept")
        signed = False
        try:
            tx_hash = await self._sign_and_send(claim_id, keep=False)
            if tx_hash is None:  # cannot happen with keep=False; typed for the checker
                raise PayoutFailed("the claim is no longer active")
            signed = True
            return tx_hash
        finally:
            self._claiming.discard(claim_id)
            if not signed:  # refused (the claim is failed) or an error: no payout in flight
                self._release()

    def _release(self) -> None:
        self.in_flight -= 1
        self._room.set()
        self._room = trio.Event()

    async def _fees(self) -> tuple[int, int]:
        """(max fee, tip) per gas: twice the node's price plus the tip, refreshed now and then."""
        now = trio.current_time()
        if self._gas_price is None or now - self._gas_price[0] > self.config.gas_price_refresh:
            price = int(await self.rpc.call("eth_gasPrice"), 16)
            self._gas_price = (now, price)
        tip = self.config.priority_fee
        return 2 * self._gas_price[1] + tip, tip

    async def _resync(self) -> int:
        pending = int(
            await self.rpc.call("eth_getTransactionCount", [self.address_hex, "pending"]), 16
        )
        local = [r.nonce for r in self.store.get_active() if r.nonce is not None]
        self.nonce_resyncs += 1
        return max([pending, *(n + 1 for n in local)])

    async def _sign_and_send(
        self, claim_id: int, *, replaces: str | None = None, keep: bool = True
    ) -> str | None:
        """Under the lock: a fresh nonce, sign, commit, send (module docstring).

        Only an ``accepted`` claim is signed, or, with ``replaces``, a claim that still holds
        that hash (else another task signed it meanwhile and its payout stands: its hash is
        returned). ``keep``: when the node cannot be asked for a nonce or a price, leave the
        claim as it is for the watcher to retry (None) rather than fail it.
        """
        self._sending.add(claim_id)
        try:
            return await self._sign_and_send_locked(claim_id, replaces, keep)
        finally:
            self._sending.discard(claim_id)

    async def _sign_and_send_locked(
        self, claim_id: int, replaces: str | None, keep: bool
    ) -> str | None:
        async with self.lock:
            row = self.store.get_claim(claim_id)
            if row is None or row.status in ("final", "failed"):
                raise PayoutFailed("the claim is no longer active")
            if row.tx_hash != replaces or (replaces is None and row.status != "accepted"):
                return row.tx_hash
            message = ""
            for _ in range(_RESIGN_ATTEMPTS):
                try:
                    if self.next_nonce is None:
                        self.next_nonce = await self._resync()
                    nonce = self.next_nonce
                    max_fee, tip = await self._fees()
                except (NodeError, NodeUnavailable) as exc:
                    if keep:
                        self.store.note_error(claim_id, f"node unavailable: {exc}")
                        return None
                    self.store.set_failed(claim_id, f"node unavailable: {exc}", refused=True)
                    raise PayoutFailed("the faucet cannot reach its node; try again") from None
                tx = sign_transaction(
                    DynamicFeeTransaction(
                        chain_id=self.chain_id,
                        nonce=nonce,
                        max_priority_fee_per_gas=tip,
                        max_fee_per_gas=max_fee,
                        gas=TRANSFER_GAS,
                        to=parse_address(row.address),
                        value=row.amount,
                    ),
                    self.key,
                )
                tx_hash = "0x" + tx.hash.hex()
                self.store.set_signed(claim_id, nonce, tx_hash, tx.raw, self.clock())
                self.next_nonce = nonce + 1
                _crash_point("after-sign")
                try:
                    await self.rpc.call("eth_sendRawTransaction", ["0x" + tx.raw.hex()])
                except NodeUnavailable as exc:
                    event(
                        log, logging.WARNING, "faucet.send_deferred", claim=claim_id, error=str(exc)
                    )
                    return tx_hash  # stays `signed`: the watcher re-sends these bytes
                except NodeError as exc:
                    message = exc.message
                    if _is_nonce_taken(message):
                        self.next_nonce = None
                        self.resigned += 1
                        continue
                    if not _is_known(message):
                        self.next_nonce = None
                        self.store.set_failed(claim_id, message, refused=True)
                        event(
                            log,
                            logging.WARNING,
                            "faucet.payout_refused",
                            claim=claim_id,
                            error=message,
                        )
                        raise PayoutFailed(f"the node refused the payout: {message}") from None
                self.store.set_sent(claim_id, self.clock())
                _crash_point("after-send")
                event(log, logging.INFO, "faucet.sent", claim=claim_id, nonce=nonce, tx=tx_hash)
                return tx_hash
            self.store.set_failed(claim_id, message, refused=True)
            raise PayoutFailed(f"the node refused the payout: {message}")

    # -- recovery and watching -----------------------------------------------------------

    async def recover(self) -> None:
        """Resume every active claim after a start (module docstring: Recovery).

        Raises:
            NodeUnavailable, NodeError: the node cannot be asked (the faucet does not start).
        """
        active = self.store.get_active()
        self.in_flight = len(active)
        for row in active:
            if row.raw_tx is not None:
                await self._resend(row)
        self.next_nonce = await self._resync()
        for row in active:
            if row.raw_tx is None:
                await self._sign_unsigned(row)
        event(log, logging.INFO, "faucet.recovered", claims=len(active), next_nonce=self.next_nonce)

    async def _resend(self, row: ClaimRow) -> None:
        """Send a recorded payout again (same bytes); see the module docstring."""
        assert row.raw_tx is not None and row.tx_hash is not None
        try:
            await self.rpc.call("eth_sendRawTransaction", ["0x" + row.raw_tx.hex()])
        except NodeUnavailable:
            return
        except NodeError as exc:
            if _is_nonce_taken(exc.message):
                receipt = await self.rpc.call("eth_getTransactionReceipt", [row.tx_hash])
                if receipt is None:  # the nonce went to another transaction: sign anew
                    self.resigned += 1
                    self.next_nonce = None
                    try:
                        await self._sign_and_send(row.id, replaces=row.tx_hash)
                    except PayoutFailed:
                        self._release()
                return
            if not _is_known(exc.message):
                self.store.note_error(row.id, exc.message)
                return
        self.store.set_sent(row.id, self.clock())

    async def _sign_unsigned(self, row: ClaimRow) -> None:
        """Sign and send an ``accepted`` claim nobody waits for (left by a crash, or by a node
        that could not be asked); it stays accepted while the node is unreachable."""
        try:
            await self._sign_and_send(row.id)
        except PayoutFailed:
            self._release()

    async def watch(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Poll receipts and finality forever; re-send what did not land."""
        task_status.started()
        while True:
            try:
                await self.check_once()
            except (NodeUnavailable, NodeError, KeyError, ValueError, TypeError) as exc:
                event(log, logging.WARNING, "faucet.watch_failed", error=repr(exc))
            await trio.sleep(self.config.poll_interval)

    async def check_once(self) -> None:
        """One round: count the stuck (from the store alone, so a dead node is no excuse),
        then finalize what is final and re-send what is due."""
        now = self.clock()
        active = [
            r
            for r in self.store.get_active()
            if r.id not in self._sending and r.id not in self._claiming
        ]
        stuck = {
            r.id
            for r in active
            if r.signed_at is not None and now - r.signed_at >= self.config.stuck_after
        }
        for claim_id in sorted(stuck - self._stuck):
            event(log, logging.WARNING, "faucet.stuck", claim=claim_id)
        self._stuck = stuck
        if not active:
            return
        finalized = await self.rpc.call("eth_getBlockByNumber", ["finalized", False])
        final_number = -1 if finalized is None else int(finalized["number"], 16)
        for row in active:
            if row.tx_hash is None:
                await self._sign_unsigned(row)
                continue
            receipt = await self.rpc.call("eth_getTransactionReceipt", [row.tx_hash])
            if receipt is not None:
                number = int(receipt["blockNumber"], 16)
                if number <= final_number:
                    if int(receipt.get("status", "0x1"), 16) == 1:
                        self.store.set_final(row.id, number, self.clock())
                        event(log, logging.INFO, "faucet.final", claim=row.id, block=number)
                    else:
                        self.store.set_failed(row.id, "the payout reverted")
                    self._stuck.discard(row.id)
                    self._release()
                continue
            since = row.sent_at if row.status == "sent" and row.sent_at is not None else None
            if since is None or now - since >= self.config.rebroadcast_after:
                await self._resend(row)

    def statistics(self) -> dict[str, Any]:
        return {
            "inFlight": self.in_flight,
            "maxInFlight": self.config.max_in_flight,
            "nextNonce": self.next_nonce,
            "stuck": len(self._stuck),
            "resigned": self.resigned,
            "nonceResyncs": self.nonce_resyncs,
        }
