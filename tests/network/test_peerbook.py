"""The pure parts of peer upkeep: the known-address book (last seen, stale addresses
forgotten, pinned bootstrap addresses, second-hand addresses not refreshed by gossip), the
scores' snapshot and restore across a restart (bans keep their remaining time, in wall-clock
terms), the peers.json encoding, and the disconnect labels metrics use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moderntensor.network import (
    AddressBook,
    DisconnectReason,
    Multiaddr,
    PeerScores,
    make_multiaddr,
)
from moderntensor.network._persist import decode_scores, encode_scores, load_scores, save_scores
from moderntensor.network._upkeep import compute_disconnect_label
from tests.network.helpers import NODE_KEYS

STALE = 60.0


def addr(i: int) -> Multiaddr:
    return make_multiaddr(f"10.0.0.{i}", 30303, NODE_KEYS[i].public_key_bytes.hex())


def pid(i: int) -> str:
    return NODE_KEYS[i].public_key_bytes.hex()


def test_a_connected_peer_is_served_then_forgotten_once_stale() -> None:
    book = AddressBook(STALE, capacity=16)
    book.connected(pid(1), addr(1), now=0.0)
    assert book.fresh(1000.0) == [addr(1)]  # connected: seen now, however long ago it came
    book.disconnected(pid(1), now=1000.0)
    assert book.fresh(1000.0 + STALE - 1) == [addr(1)]
    assert book.fresh(1000.0 + STALE) == []
    assert pid(1) not in book and book.forgotten == 1


def test_a_reconnect_overlapping_the_old_session_stays_connected() -> None:
    book = AddressBook(STALE, capacity=16)
    book.connected(pid(1), addr(1), 0.0)
    book.connected(pid(1), addr(1), 5.0)  # the new connection
    book.disconnected(pid(1), 6.0)  # the old one ends
    assert book.fresh(6.0 + 10 * STALE) == [addr(1)]


def test_second_hand_addresses_age_from_when_first_learned() -> None:
    book = AddressBook(STALE, capacity=16)
    assert book.learn(addr(2), 0.0)
    assert not book.learn(addr(2), STALE - 1)  # heard again: no refresh
    assert book.fresh(STALE - 1, exclude=pid(3)) == [addr(2)]
    assert book.fresh(STALE - 1, exclude=pid(2)) == []  # never served back to itself
    assert book.fresh(STALE) == []
    assert pid(2) not in book


def test_bootstrap_addresses_are_kept_but_served_only_once_seen() -> None:
    book = AddressBook(STALE, capacity=16, pinned=[addr(4)])
    assert book.fresh(0.0) == [] and pid(4) in book
    book.connected(pid(4), None, 10.0)
    book.disconnected(pid(4), 20.0)
    assert book.fresh(20.0) == [addr(4)]
    assert book.fresh(20.0 + STALE) == [] and pid(4) in book  # pinned: never forgotten


def test_a_full_book_makes_room_only_by_forgetting_stale_addresses() -> None:
    book = AddressBook(STALE, capacity=2)
    assert book.learn(addr(1), 0.0) and book.learn(addr(2), 0.0)
    assert not book.learn(addr(3), 1.0)
    assert book.learn(addr(3), STALE)  # 1 and 2 went stale
    assert len(book) == 1


def test_scores_and_bans_survive_a_snapshot_with_the_time_that_passed() -> None:
    before = PeerScores(half_life_s=100.0, ban_s=600.0)
    before.charge(pid(1), 40.0, now=5.0)
    assert before.charge(pid(2), 150.0, now=5.0)  # banned until 605
    data = encode_scores(before, now=105.0, wall_now=1_000_000.0)  # 500 s of ban left
    doc = json.loads(data)
    assert doc["version"] == 1 and doc["saved_at"] == 1_000_000.0
    assert {p["id"]: p["banned_until"] for p in doc["peers"]}[pid(2)] == 1_000_500.0
    items, elapsed = decode_scores(data, wall_now=1_000_100.0)  # down for 100 s
    assert elapsed == 100.0
    after = PeerScores(half_life_s=100.0, ban_s=600.0)
    after.restore(items, now=7.0, elapsed_s=elapsed)  # another process's clock
    assert after.is_banned(pid(2), 7.0 + 399) and not after.is_banned(pid(2), 7.0 + 401)
    assert after.score(pid(1), 7.0) == pytest.approx(-40.0 / 4)  # two half-lives in all
    assert not after.is_banned(pid(1), 7.0)


def test_a_ban_that_ended_while_down_is_gone(tmp_path: Path) -> None:
    path = tmp_path / "peers.json"
    scores = PeerScores(ban_s=60.0)
    scores.charge(pid(3), 200.0, now=0.0)
    save_scores(path, scores, now=0.0, wall_now=5_000.0)
    restored = PeerScores(ban_s=60.0)
    assert load_scores(path, restored, now=0.0, wall_now=5_061.0) == 1
    assert not restored.is_banned(pid(3), 0.0)
    assert not (tmp_path / "peers.json.tmp").exists()  # renamed into place


@pytest.mark.parametrize("text", ["{", "[]", '{"version": 2}', '{"version": 1, "saved_at": "x"}'])
def test_a_broken_scores_file_is_ignored(tmp_path: Path, text: str) -> None:
    path = tmp_path / "peers.json"
    path.write_text(text)
    scores = PeerScores()
    assert load_scores(path, scores, now=0.0, wall_now=0.0) == 0
    assert scores.snapshot(0.0) == []


def test_disconnect_labels_are_a_bounded_set() -> None:
    assert compute_disconnect_label("closed", DisconnectReason.BANNED) == ("BANNED", "us")
    assert compute_disconnect_label("peer said SHUTDOWN", None) == ("SHUTDOWN", "peer")
    assert compute_disconnect_label("peer said whatever", None) == ("UNKNOWN", "peer")
    assert compute_disconnect_label("BAD_MESSAGE: junk", None) == ("BAD_MESSAGE", "us")
    assert compute_disconnect_label("connection lost: x", None) == ("CONNECTION_LOST", "peer")
    assert compute_disconnect_label("internal error", None) == ("INTERNAL_ERROR", "us")
    assert compute_disconnect_label("closed", None) == ("CLOSED", "peer")
