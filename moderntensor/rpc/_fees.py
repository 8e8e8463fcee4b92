"""Fee suggestions and eth_feeHistory, computed from recent blocks and their receipts.

The suggested priority fee is the 60th percentile of the effective tips paid in the last 20
blocks (geth's oracle idea, simplified), or 1 gwei when they held no transaction. As geth's,
tips under 2 wei are left out of the sample (``IGNORE_TIP_BELOW``: transactions a validator
sends itself, or zero-tip dev traffic, say nothing about what it takes to be included), and
the answer is never below the pool's ``min_tip``, which a suggestion below would be refused
by. Results are cached per head, because wallets ask before every transaction.
``eth_feeHistory`` rewards are cached per block and percentiles (a committed block's never
change): clients poll the same window again and again, and recomputing it decoded the
receipts of up to 1,024 blocks.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from moderntensor.chain.blocks import Header

from ._chainview import ChainView
from ._errors import SERVER_ERROR, RpcError

__all__ = ["DEFAULT_TIP", "IGNORE_TIP_BELOW", "MAX_FEE_HISTORY_BLOCKS", "FeeOracle"]

DEFAULT_TIP = 1_000_000_000
IGNORE_TIP_BELOW = 2  # wei (geth's --gpo.ignoreprice default)
MAX_FEE_HISTORY_BLOCKS = 1024
_TIP_BLOCKS = 20
_TIP_PERCENTILE = 60
_CACHED_REWARDS = 4096


class FeeOracle:
    def __init__(self, view: ChainView) -> None:
        self.view = view
        self._tip_for: tuple[bytes, int] | None = None
        self._rewards_of: OrderedDict[tuple[bytes, tuple[float, ...]], list[str]] = OrderedDict()

    def suggested_tip(self) -> int:
        head = self.view.service.head
        cached = self._tip_for
        if cached is not None and cached[0] == head.hash:
            return cached[1]
        tips: list[int] = []
        header: Header | None = head
        for _ in range(_TIP_BLOCKS):
            if header is None or header.number == 0:
                break
            for receipt in self.view.receipts(header):
                paid = receipt.effective_gas_price - header.base_fee_per_gas
                if paid >= IGNORE_TIP_BELOW:
                    tips.append(paid)
            header = self.view.service.header_by_hash(header.parent_hash)
        tip = DEFAULT_TIP
        if tips:
            tips.sort()
            tip = tips[min(len(tips) - 1, len(tips) * _TIP_PERCENTILE // 100)]
        tip = max(tip, self.view.service.pool.min_tip)
        self._tip_for = (head.hash, tip)
        return tip

    def gas_price(self) -> int:
        """A legacy gas price that gets included: next base fee plus the suggested tip."""
        return self.view.service.next_base_fee() + self.suggested_tip()

    def fee_history(
        self, count: int, newest: str | int, percentiles: list[float]
    ) -> dict[str, Any]:
        """``{oldestBlock, baseFeePerGas (count+1), gasUsedRatio, [reward]}`` and the
        (always zero) blob fields, exactly the spec's fields."""
        service = self.view.service
        head = service.head
        last = self.view.header(newest)
        if last is None:
            raise RpcError(
                SERVER_ERROR,
                f"request beyond head block: requested {newest}, head {head.number}",
            )
        count = min(count, MAX_FEE_HISTORY_BLOCKS, last.number + 1)
        if count == 0:
            return {"oldestBlock": "0x0", "baseFeePerGas": [], "gasUsedRatio": []}
        headers = [last]
        while len(headers) < count:
            parent = service.header_by_hash(headers[-1].parent_hash)
            if parent is None:
                break
            headers.append(parent)
        headers.reverse()
        if last.hash == head.hash:
            next_fee = service.next_base_fee()
        else:
            child = service.resolve_tag(last.number + 1)
            next_fee = child.base_fee_per_gas if child is not None else service.next_base_fee()
        out: dict[str, Any] = {
            "oldestBlock": hex(headers[0].number),
            "baseFeePerGas": [hex(h.base_fee_per_gas) for h in headers] + [hex(next_fee)],
            "gasUsedRatio": [h.gas_used / h.gas_limit if h.gas_limit else 0.0 for h in headers],
            "baseFeePerBlobGas": ["0x0"] * (len(headers) + 1),
            "blobGasUsedRatio": [0.0] * len(headers),
        }
        if percentiles:
            out["reward"] = [self._cached_rewards(h, percentiles) for h in headers]
        return out

    def _cached_rewards(self, header: Header, percentiles: list[float]) -> list[str]:
        key = (header.hash, tuple(percentiles))
        rewards = self._rewards_of.get(key)
        if rewards is None:
            rewards = self._rewards(header, percentiles)
            self._rewards_of[key] = rewards  # each OrderedDict step is atomic under the GIL
            if len(self._rewards_of) > _CACHED_REWARDS:
                self._rewards_of.popitem(last=False)
        return rewards

    def _rewards(self, header: Header, percentiles: list[float]) -> list[str]:
        """Effective tips at gas-weighted percentiles of one block (geth's algorithm)."""
        receipts = self.view.receipts(header)
        if not receipts:
            return ["0x0"] * len(percentiles)
        pairs = sorted(
            (r.effective_gas_price - header.base_fee_per_gas, r.gas_used) for r in receipts
        )
        total = sum(gas for _, gas in pairs)
        out = []
        i, cumulative = 0, pairs[0][1]
        for p in percentiles:
            threshold = total * p / 100
            while cumulative < threshold and i < len(pairs) - 1:
                i += 1
                cumulative += pairs[i][1]
            out.append(hex(pairs[i][0]))
        return out
