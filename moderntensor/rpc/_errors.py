"""JSON-RPC errors: one exception type carrying the code, message and optional data.

Codes follow JSON-RPC 2.0 and geth: -32700 parse error, -32600 invalid request, -32601 method
not found, -32602 invalid params (the message names the parameter), -32603 internal error,
-32000 server errors with Ethereum's wording (rejected transactions, unknown headers, calls to
code), -32005 limit exceeded (EIP-1474: a response, batch or CPU budget; the message names the
``[rpc]`` key), -39001 unknown block (the spec's code for a block tag with no block behind it).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "LIMIT_EXCEEDED",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "SERVER_ERROR",
    "UNKNOWN_BLOCK",
    "RpcError",
    "invalid_params",
]

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_ERROR = -32000
LIMIT_EXCEEDED = -32005
UNKNOWN_BLOCK = -39001


class RpcError(Exception):
    """An error answer; raised by handlers, turned into ``{"code", "message"[, "data"]}``."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            out["data"] = self.data
        return out


def invalid_params(index: int, name: str, problem: str) -> RpcError:
    """-32602 naming the argument by position and name, in geth's form."""
    return RpcError(INVALID_PARAMS, f"invalid argument {index} ({name}): {problem}")
