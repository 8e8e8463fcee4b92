"""The checker itself must catch what it is for: extra fields, bad hex, a trailing newline."""

from __future__ import annotations

import jsonschema
import pytest

from tests.rpc.schema import check_result


def test_quantity_patterns_are_anchored_at_the_very_end() -> None:
    check_result("eth_blockNumber", "0x1")
    for bad in ("0x1\n", "0x01", "1", "0x", "0xG"):
        with pytest.raises(jsonschema.ValidationError):
            check_result("eth_blockNumber", bad)


def test_additional_properties_are_rejected_where_the_spec_forbids_them() -> None:
    good = {"oldestBlock": "0x1", "baseFeePerGas": ["0x1", "0x1"], "gasUsedRatio": [0.5]}
    check_result("eth_feeHistory", good)
    with pytest.raises(jsonschema.ValidationError):
        check_result("eth_feeHistory", {**good, "oldestblock": "0x1"})


def test_exists_drops_the_null_branch() -> None:
    check_result("eth_getTransactionReceipt", None)
    with pytest.raises(jsonschema.ValidationError):
        check_result("eth_getTransactionReceipt", None, exists=True)
