"""The wire format: one RLP list per transport frame, ``[type, field...]``.

Every frame is one transport message (a WebSocket binary message, or one item of a memory
channel), so there is no stream framing. The first item is the message type, a small integer
(one byte in canonical RLP); the fields follow. Consensus objects travel in their own
encodings, as byte strings inside the frame (a block: ``encode_block``, a vote:
``encode_vote``, a certificate: ``encode_certificate``, evidence: ``encode_evidence``), so
each is checked by its own total decoder and size limit.

==================  ====  =====================================================================
message             type  fields
==================  ====  =====================================================================
Hello                  1  version, chain_id, genesis_hash, public_key, nonce, listen_port,
                          head_number, head_hash, finalized_slot, epoch, view
HelloAck               2  signature (65 bytes)
Disconnect             3  reason (:class:`DisconnectReason`)
GetStatus              4  request_id
Status                 5  request_id, head_number, head_hash, finalized_slot, epoch, view,
                          certified (``[]`` for none, or ``[epoch, slot]``)
Transactions          16  ``[raw_tx, ...]`` (raw transactions, decoded by the chain service)
Proposal              17  block, or block, slot, proposer, signature (a re-proposal)
Vote                  18  vote
Certificate           19  certificate
Evidence              20  evidence
Have                  21  ``[message_id, ...]`` (32 bytes each, at most ``MAX_HAVE_IDS``)
Want                  22  ``[message_id, ...]``
GetBlock              32  request_id, block_hash
BlockReply            33  request_id, block
NotFound              34  request_id
GetCertificates       35  request_id, epoch, slot
Certificates          36  request_id, ``[certificate, ...]``
GetVotes              37  request_id, validator_id
Votes                 38  request_id, ``[vote, ...]``
GetPeers              39  request_id
Peers                 40  request_id, ``[multiaddr, ...]`` (strings)
GetBlockRange         41  request_id, start, count (1 .. ``MAX_RANGE_BLOCKS``)
BlockRange            42  request_id, ``[[block, certificate or empty], ...]``
==================  ====  =====================================================================

A received proposal is always built by :class:`~moderntensor.consensus.Proposal` from the
block (``Proposal(block)``), or by ``Proposal.repropose`` whose signature binds the three
extra fields: the slot, proposer and signature the core checks are the block's own (review
H1). :func:`decode_message` is total (STYLE rule 5): any bytes give a message or
:class:`~moderntensor.codec.DecodeError`. Each type has a size cap (:data:`MAX_SIZES`),
checked from the type byte before the frame is parsed; trailing bytes are rejected.
"""

from __future__ import annotations

from collections.abc import Callable

from moderntensor.chain.blocks import Block, decode_block, encode_block
from moderntensor.chain.transactions import MAX_TX_SIZE
from moderntensor.chain.votes import (
    Evidence,
    SignedVote,
    decode_evidence,
    decode_vote,
    encode_evidence,
    encode_vote,
)
from moderntensor.codec import (
    DecodeError,
    RLPItem,
    decode_rlp,
    encode_rlp,
    encode_uint,
    expect_bytes,
    expect_fixed,
    expect_list,
    expect_uint,
)
from moderntensor.consensus import (
    Certificate,
    Proposal,
    Round,
    decode_certificate,
    encode_certificate,
)
from moderntensor.crypto import InvalidSignature, Signature
from moderntensor.network._messages import (
    MAX_CERTIFICATES_REPLY,
    MAX_HAVE_IDS,
    MAX_PEERS_REPLY,
    MAX_RANGE_BLOCKS,
    MAX_SIZES,
    MAX_TX_BATCH,
    MAX_VOTES_REPLY,
    BlockRange,
    BlockReply,
    Certificates,
    Disconnect,
    DisconnectReason,
    GetBlock,
    GetBlockRange,
    GetCertificates,
    GetPeers,
    GetStatus,
    GetVotes,
    Have,
    Hello,
    HelloAck,
    MessageType,
    NotFound,
    Peers,
    Status,
    Transactions,
    Votes,
    Want,
    WireMessage,
)
from moderntensor.network._multiaddr import parse_multiaddr

__all__ = ["decode_message", "encode_message", "peek_type"]


# -- encoding --------------------------------------------------------------------------


def _u(value: int) -> bytes:
    return encode_uint(value)


def _round_items(rnd: Round | None) -> list[RLPItem]:
    return [] if rnd is None else [_u(rnd[0]), _u(rnd[1])]


def _fields(msg: WireMessage) -> tuple[MessageType, list[RLPItem]]:
    """The type and fields of a message (dispatch on its class)."""
    if isinstance(msg, SignedVote):
        return MessageType.VOTE, [encode_vote(msg)]
    if isinstance(msg, Certificate):
        return MessageType.CERTIFICATE, [encode_certificate(msg)]
    if isinstance(msg, Evidence):
        return MessageType.EVIDENCE, [encode_evidence(msg)]
    if isinstance(msg, Proposal):
        block = encode_block(msg.block)
        if not msg.is_reproposal:
            return MessageType.PROPOSAL, [block]
        sig = msg.signature.to_bytes()
        return MessageType.PROPOSAL, [block, _u(msg.slot), msg.proposer, sig]
    if isinstance(msg, Transactions):
        return MessageType.TRANSACTIONS, [list(msg.txs)]
    if isinstance(msg, Have):
        return MessageType.HAVE, [list(msg.ids)]
    if isinstance(msg, Want):
        return MessageType.WANT, [list(msg.ids)]
    if isinstance(msg, Hello):
        return MessageType.HELLO, [
            _u(msg.version), _u(msg.chain_id), msg.genesis_hash, msg.public_key, msg.nonce,
            _u(msg.listen_port), _u(msg.head_number), msg.head_hash, _u(msg.finalized_slot),
            _u(msg.epoch), _u(msg.view),
        ]  # fmt: skip
    if isinstance(msg, HelloAck):
        return MessageType.HELLO_ACK, [msg.signature.to_bytes()]
    if isinstance(msg, Disconnect):
        return MessageType.DISCONNECT, [_u(int(msg.reason))]
    rid = _u(msg.request_id)
    if isinstance(msg, GetStatus):
        return MessageType.GET_STATUS, [rid]
    if isinstance(msg, Status):
        return MessageType.STATUS, [
            rid, _u(msg.head_number), msg.head_hash, _u(msg.finalized_slot), _u(msg.epoch),
            _u(msg.view), _round_items(msg.certified),
        ]  # fmt: skip
    if isinstance(msg, GetBlock):
        return MessageType.GET_BLOCK, [rid, msg.block_hash]
    if isinstance(msg, BlockReply):
        return MessageType.BLOCK, [rid, encode_block(msg.block)]
    if isinstance(msg, NotFound):
        return MessageType.NOT_FOUND, [rid]
    if isinstance(msg, GetCertificates):
        return MessageType.GET_CERTIFICATES, [rid, _u(msg.epoch), _u(msg.slot)]
    if isinstance(msg, Certificates):
        return MessageType.CERTIFICATES, [rid, [encode_certificate(c) for c in msg.certificates]]
    if isinstance(msg, GetVotes):
        return MessageType.GET_VOTES, [rid, msg.validator_id]
    if isinstance(msg, Votes):
        return MessageType.VOTES, [rid, [encode_vote(v) for v in msg.votes]]
    if isinstance(msg, GetPeers):
        return MessageType.GET_PEERS, [rid]
    if isinstance(msg, GetBlockRange):
        return MessageType.GET_BLOCK_RANGE, [rid, _u(msg.start), _u(msg.count)]
    if isinstance(msg, BlockRange):
        entries: list[RLPItem] = [
            [encode_block(b), b"" if c is None else encode_certificate(c)] for b, c in msg.blocks
        ]
        return MessageType.BLOCK_RANGE, [rid, entries]
    return MessageType.PEERS, [rid, [str(a).encode("ascii") for a in msg.addrs]]


_COUNT_LIMITS: dict[type, tuple[str, int]] = {
    Transactions: ("txs", MAX_TX_BATCH),
    Have: ("ids", MAX_HAVE_IDS),
    Want: ("ids", MAX_HAVE_IDS),
    Certificates: ("certificates", MAX_CERTIFICATES_REPLY),
    Votes: ("votes", MAX_VOTES_REPLY),
    Peers: ("addrs", MAX_PEERS_REPLY),
    BlockRange: ("blocks", MAX_RANGE_BLOCKS),
}


def encode_message(msg: WireMessage) -> bytes:
    """The frame of a message.

    Raises:
        ValueError: the frame would exceed its type's size cap (a batch or reply too big:
            the caller splits or truncates it first).
    """
    limit = _COUNT_LIMITS.get(type(msg))
    if limit is not None and len(getattr(msg, limit[0])) > limit[1]:
        raise ValueError(f"{type(msg).__name__} of more than {limit[1]} {limit[0]}: over the cap")
    kind, fields = _fields(msg)
    frame = encode_rlp([_u(int(kind)), *fields])
    if len(frame) > MAX_SIZES[kind]:
        raise ValueError(f"{kind.name} frame of {len(frame)} bytes > cap {MAX_SIZES[kind]}")
    return frame


# -- decoding --------------------------------------------------------------------------


def peek_type(frame: bytes) -> MessageType:
    """The type of a frame, read from its first bytes without parsing the rest.

    Raises:
        DecodeError: not an RLP list starting with a known one-byte type.
    """
    if not isinstance(frame, bytes) or not frame:
        raise DecodeError("frame", "empty or not bytes")
    prefix = frame[0]
    if prefix < 0xC0:
        raise DecodeError("frame", "not an RLP list")
    offset = 1 if prefix <= 0xF7 else 1 + prefix - 0xF7
    if len(frame) <= offset or not 0 < frame[offset] < 0x80:
        raise DecodeError("frame.type", "expected a one-byte message type")
    try:
        return MessageType(frame[offset])
    except ValueError:
        raise DecodeError("frame.type", f"unknown message type {frame[offset]}") from None


def decode_message(frame: bytes) -> WireMessage:
    """Decode one frame. Total: any bytes give a message or DecodeError.

    Raises:
        DecodeError: unknown type, over the type's cap, malformed, non-canonical, wrong field
            count, trailing bytes, or an invalid embedded object (naming the field).
    """
    kind = peek_type(frame)
    items = expect_list(decode_rlp(frame, "frame", MAX_SIZES[kind]), "frame")
    fields = items[1:]
    what = kind.name.lower()
    try:
        return _DECODERS[kind](fields, what)
    except (InvalidSignature, ValueError) as exc:  # a field a constructor refused
        if isinstance(exc, DecodeError):
            raise
        raise DecodeError(what, str(exc)) from None


def _n(fields: list[RLPItem], what: str, count: int) -> list[RLPItem]:
    if len(fields) != count:
        raise DecodeError(what, f"field count {len(fields)}, expected {count}")
    return fields


def _rid(item: RLPItem, what: str) -> int:
    return expect_uint(item, f"{what}.request_id", 64)


def _int(item: RLPItem, what: str, field: str, bits: int = 64) -> int:
    return expect_uint(item, f"{what}.{field}", bits)


def _sig(item: RLPItem, what: str) -> Signature:
    raw = expect_fixed(item, f"{what}.signature", 65)
    try:
        return Signature.from_bytes(raw)
    except InvalidSignature as exc:
        raise DecodeError(f"{what}.signature", str(exc)) from None


def _seq(item: RLPItem, what: str, limit: int) -> list[bytes]:
    entries = expect_list(item, what)
    if len(entries) > limit:
        raise DecodeError(what, f"{len(entries)} entries > limit {limit}")
    return [expect_bytes(e, f"{what}[]") for e in entries]


def _hello(f: list[RLPItem], what: str) -> Hello:
    f = _n(f, what, 11)
    return Hello(
        version=_int(f[0], what, "version", 32),
        chain_id=_int(f[1], what, "chain_id"),
        genesis_hash=expect_fixed(f[2], f"{what}.genesis_hash", 32),
        public_key=expect_fixed(f[3], f"{what}.public_key", 33),
        nonce=expect_fixed(f[4], f"{what}.nonce", 32),
        listen_port=_int(f[5], what, "listen_port", 16),
        head_number=_int(f[6], what, "head_number"),
        head_hash=expect_fixed(f[7], f"{what}.head_hash", 32),
        finalized_slot=_int(f[8], what, "finalized_slot"),
        epoch=_int(f[9], what, "epoch"),
        view=_int(f[10], what, "view"),
    )


def _hello_ack(f: list[RLPItem], what: str) -> HelloAck:
    return HelloAck(_sig(_n(f, what, 1)[0], what))


def _disconnect(f: list[RLPItem], what: str) -> Disconnect:
    code = _int(_n(f, what, 1)[0], what, "reason", 8)
    try:
        return Disconnect(DisconnectReason(code))
    except ValueError:
        raise DecodeError(f"{what}.reason", f"unknown reason code {code}") from None


def _get_status(f: list[RLPItem], what: str) -> GetStatus:
    return GetStatus(_rid(_n(f, what, 1)[0], what))


def _status(f: list[RLPItem], what: str) -> Status:
    f = _n(f, what, 7)
    rnd = expect_list(f[6], f"{what}.certified")
    if len(rnd) not in (0, 2):
        raise DecodeError(f"{what}.certified", "expected [] or [epoch, slot]")
    certified = None
    if rnd:
        certified = (_int(rnd[0], what, "certified.epoch"), _int(rnd[1], what, "certified.slot"))
    return Status(
        _rid(f[0], what), _int(f[1], what, "head_number"),
        expect_fixed(f[2], f"{what}.head_hash", 32), _int(f[3], what, "finalized_slot"),
        _int(f[4], what, "epoch"), _int(f[5], what, "view"), certified,
    )  # fmt: skip


def _transactions(f: list[RLPItem], what: str) -> Transactions:
    txs = _seq(_n(f, what, 1)[0], f"{what}.txs", MAX_TX_BATCH)
    for raw in txs:
        if not raw or len(raw) > MAX_TX_SIZE:
            raise DecodeError(f"{what}.txs[]", f"transaction of {len(raw)} bytes")
    return Transactions(tuple(txs))


def _ids(f: list[RLPItem], what: str) -> tuple[bytes, ...]:
    ids = _seq(_n(f, what, 1)[0], f"{what}.ids", MAX_HAVE_IDS)
    for raw in ids:
        if len(raw) != 32:
            raise DecodeError(f"{what}.ids[]", f"message id of {len(raw)} bytes, expected 32")
    return tuple(ids)


def _proposal(f: list[RLPItem], what: str) -> Proposal:
    if len(f) not in (1, 4):
        raise DecodeError(what, f"field count {len(f)}, expected 1 or 4")
    block = decode_block(expect_bytes(f[0], f"{what}.block"))
    if len(f) == 1:
        proposal = Proposal(block)
        try:  # malformed signature bytes fail here, not in the core
            proposal.signature  # noqa: B018
        except InvalidSignature as exc:
            raise DecodeError(f"{what}.header.proposer_signature", str(exc)) from None
        return proposal
    slot = _int(f[1], what, "slot")
    proposer = expect_fixed(f[2], f"{what}.proposer", 20)
    return Proposal.repropose(block, slot, proposer, _sig(f[3], what))


def _vote(f: list[RLPItem], what: str) -> SignedVote:
    return decode_vote(expect_bytes(_n(f, what, 1)[0], what))


def _certificate(f: list[RLPItem], what: str) -> Certificate:
    return decode_certificate(expect_bytes(_n(f, what, 1)[0], what))


def _evidence(f: list[RLPItem], what: str) -> Evidence:
    return decode_evidence(expect_bytes(_n(f, what, 1)[0], what))


def _get_block(f: list[RLPItem], what: str) -> GetBlock:
    f = _n(f, what, 2)
    return GetBlock(_rid(f[0], what), expect_fixed(f[1], f"{what}.block_hash", 32))


def _block(f: list[RLPItem], what: str) -> BlockReply:
    f = _n(f, what, 2)
    return BlockReply(_rid(f[0], what), decode_block(expect_bytes(f[1], f"{what}.block")))


def _not_found(f: list[RLPItem], what: str) -> NotFound:
    return NotFound(_rid(_n(f, what, 1)[0], what))


def _get_certificates(f: list[RLPItem], what: str) -> GetCertificates:
    f = _n(f, what, 3)
    return GetCertificates(_rid(f[0], what), _int(f[1], what, "epoch"), _int(f[2], what, "slot"))


def _certificates(f: list[RLPItem], what: str) -> Certificates:
    f = _n(f, what, 2)
    raws = _seq(f[1], f"{what}.certificates", MAX_CERTIFICATES_REPLY)
    return Certificates(_rid(f[0], what), tuple(decode_certificate(r) for r in raws))


def _get_votes(f: list[RLPItem], what: str) -> GetVotes:
    f = _n(f, what, 2)
    return GetVotes(_rid(f[0], what), expect_fixed(f[1], f"{what}.validator_id", 20))


def _votes(f: list[RLPItem], what: str) -> Votes:
    f = _n(f, what, 2)
    raws = _seq(f[1], f"{what}.votes", MAX_VOTES_REPLY)
    return Votes(_rid(f[0], what), tuple(decode_vote(r) for r in raws))


def _get_peers(f: list[RLPItem], what: str) -> GetPeers:
    return GetPeers(_rid(_n(f, what, 1)[0], what))


def _peers(f: list[RLPItem], what: str) -> Peers:
    f = _n(f, what, 2)
    addrs = []
    for raw in _seq(f[1], f"{what}.addrs", MAX_PEERS_REPLY):
        try:
            addrs.append(parse_multiaddr(raw.decode("ascii")))
        except (UnicodeDecodeError, ValueError) as exc:
            raise DecodeError(f"{what}.addrs[]", str(exc)) from None
    return Peers(_rid(f[0], what), tuple(addrs))


def _get_block_range(f: list[RLPItem], what: str) -> GetBlockRange:
    f = _n(f, what, 3)
    count = _int(f[2], what, "count", 16)
    if not 1 <= count <= MAX_RANGE_BLOCKS:
        raise DecodeError(f"{what}.count", f"{count} not in 1..{MAX_RANGE_BLOCKS}")
    return GetBlockRange(_rid(f[0], what), _int(f[1], what, "start"), count)


def _block_range(f: list[RLPItem], what: str) -> BlockRange:
    f = _n(f, what, 2)
    entries = expect_list(f[1], f"{what}.blocks")
    if len(entries) > MAX_RANGE_BLOCKS:
        raise DecodeError(f"{what}.blocks", f"{len(entries)} entries > limit {MAX_RANGE_BLOCKS}")
    blocks: list[tuple[Block, Certificate | None]] = []
    for entry in entries:
        pair = expect_list(entry, f"{what}.blocks[]")
        if len(pair) != 2:
            raise DecodeError(f"{what}.blocks[]", "expected [block, certificate]")
        block = decode_block(expect_bytes(pair[0], f"{what}.blocks[].block"))
        raw = expect_bytes(pair[1], f"{what}.blocks[].certificate")
        blocks.append((block, decode_certificate(raw) if raw else None))
    return BlockRange(_rid(f[0], what), tuple(blocks))


_DECODERS: dict[MessageType, Callable[[list[RLPItem], str], WireMessage]] = {
    MessageType.HELLO: _hello,
    MessageType.HELLO_ACK: _hello_ack,
    MessageType.DISCONNECT: _disconnect,
    MessageType.GET_STATUS: _get_status,
    MessageType.STATUS: _status,
    MessageType.TRANSACTIONS: _transactions,
    MessageType.PROPOSAL: _proposal,
    MessageType.VOTE: _vote,
    MessageType.CERTIFICATE: _certificate,
    MessageType.EVIDENCE: _evidence,
    MessageType.HAVE: lambda f, what: Have(_ids(f, what)),
    MessageType.WANT: lambda f, what: Want(_ids(f, what)),
    MessageType.GET_BLOCK: _get_block,
    MessageType.BLOCK: _block,
    MessageType.NOT_FOUND: _not_found,
    MessageType.GET_CERTIFICATES: _get_certificates,
    MessageType.CERTIFICATES: _certificates,
    MessageType.GET_VOTES: _get_votes,
    MessageType.VOTES: _votes,
    MessageType.GET_PEERS: _get_peers,
    MessageType.PEERS: _peers,
    MessageType.GET_BLOCK_RANGE: _get_block_range,
    MessageType.BLOCK_RANGE: _block_range,
}
