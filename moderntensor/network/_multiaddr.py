"""Peer addresses in multiaddr style: ``/ip4/127.0.0.1/tcp/30303/ws/p2p/<peer-id>``.

The peer id is the hex of the node's compressed public key (:func:`moderntensor.keys.peer_id_of`),
so a dialer knows the key the other side must prove in the handshake. node.toml's
``[p2p] bootstrap`` is parsed with :func:`parse_multiaddr`; peer exchange sends addresses as
these strings.
"""

from __future__ import annotations

import ipaddress

import attrs

__all__ = ["MULTIADDR_FORM", "Multiaddr", "make_multiaddr", "parse_multiaddr"]

MULTIADDR_FORM = "/ip4/<address>/tcp/<port>/ws/p2p/<peer-id>"


@attrs.frozen(slots=True)
class Multiaddr:
    """A peer address, ``/ip4/127.0.0.1/tcp/30303/ws/p2p/<peer-id>`` (``ip6``, ``dns4``,
    ``dns6`` and ``dns`` hosts too); the peer id is the hex of the compressed node public key
    (:func:`moderntensor.keys.peer_id_of`)."""

    protocol: str
    host: str
    port: int
    peer_id: str

    def __str__(self) -> str:
        return f"/{self.protocol}/{self.host}/tcp/{self.port}/ws/p2p/{self.peer_id}"


def make_multiaddr(host: str, port: int, peer_id: str) -> Multiaddr:
    """The address of ``peer_id`` at ``host`` (an IP literal or a DNS name) and ``port``.

    Raises:
        ValueError: as :func:`parse_multiaddr`.
    """
    try:
        protocol = f"ip{ipaddress.ip_address(host).version}"
    except ValueError:
        protocol = "dns"
    return parse_multiaddr(str(Multiaddr(protocol, host, port, peer_id)))


def parse_multiaddr(text: str) -> Multiaddr:
    """Parse a peer address.

    Raises:
        ValueError: naming the part that is wrong.
    """
    parts = text.split("/")
    if len(parts) != 8 or parts[0] or parts[3] != "tcp" or parts[5] != "ws" or parts[6] != "p2p":
        raise ValueError(f"expected {MULTIADDR_FORM}, got {text!r}")
    _, protocol, host, _, port_text, _, _, peer_id = parts
    if protocol in ("ip4", "ip6"):
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"{text!r}: {host!r} is not an IP address") from None
        if ip.version != int(protocol[-1]):
            raise ValueError(f"{text!r}: {host!r} is not an IPv{protocol[-1]} address")
    elif protocol in ("dns", "dns4", "dns6"):
        if not host or len(host) > 253 or not all(c.isalnum() or c in "-." for c in host):
            raise ValueError(f"{text!r}: {host!r} is not a host name")
    else:
        raise ValueError(f"{text!r}: unknown protocol {protocol!r} (ip4, ip6, dns4, dns6, dns)")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{text!r}: port {port_text!r} is not in 1-65535")
    try:
        key = bytes.fromhex(peer_id)
    except ValueError:
        key = b""
    if len(key) != 33 or key[0] not in (2, 3):
        raise ValueError(
            f"{text!r}: peer id must be the 66 hex digits of a compressed public key, "
            f"got {peer_id!r}"
        )
    return Multiaddr(protocol, host, int(port_text), peer_id.lower())
