"""The client address the audit trail stores: the peer, or what a trusted proxy forwarded.

Issue 18: uvicorn honoured X-Forwarded-For from 127.0.0.1 by default and handed its text on as the
client address: 200 characters overflowed the audit column (500, action committed, no entry) and
`203.0.113.66` or `<script>` were stored as the client. Now uvicorn leaves the peer alone
(service.runtime.server) and this module decides: forwarded headers count only when the peer is in
FACEVERIFY_TRUSTED_PROXIES, the address taken is the right-most one that is not a trusted proxy,
and it must parse as an IP address; anything else gives the peer address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.requests import Request

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_MAX_PEER = 64  # a socket peer is an address; a test transport's name is cut to fit the column


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def client_address(request: Request, trusted: Sequence[Network]) -> str | None:
    """The validated client IP (see the module docstring), else the peer address."""
    peer = request.client.host if request.client else None
    if peer is None:
        return None
    peer_ip = _ip(peer)
    if peer_ip is None or not any(peer_ip in network for network in trusted):
        return peer[:_MAX_PEER]
    forwarded = request.headers.get("x-forwarded-for", "")
    for hop in reversed(forwarded.split(",")[-16:] if forwarded else []):
        hop_ip = _ip(hop)
        if hop_ip is None:
            break  # garbage: trust nothing further left
        if not any(hop_ip in network for network in trusted):
            return str(hop_ip)
    return str(peer_ip)
