"""Connection counts per client (an address, a user): the listeners cap each one so that a
single client cannot hold the whole connection budget and lock everyone else out.

Sans-IO: the listeners call `acquire` when a connection arrives and `release` when it ends.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Hashable
from typing import Final, Generic, TypeVar

__all__ = ["IPV6_PREFIX", "ConnectionCounts", "address_key"]

# One IPv6 host usually holds a whole /64, so counting per address would let it pick a fresh
# address for every connection: its connections are counted together.
IPV6_PREFIX: Final = 64

K = TypeVar("K", bound=Hashable)


def address_key(host: str) -> str:
    """What to count a client address under: an IPv4 address as is (also when it arrives
    IPv4-mapped on an IPv6 socket), an IPv6 address as its /64; anything else (a Unix
    socket's path, no address at all) as given."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)


class ConnectionCounts(Generic[K]):
    """How many connections each key holds, at most `limit` each."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"the limit must be at least 1, not {limit}")
        self.limit = limit
        self._counts: dict[K, int] = {}

    def acquire(self, key: K) -> bool:
        """Count one more connection for `key`; False (and nothing counted) at the limit."""
        count = self._counts.get(key, 0)
        if count >= self.limit:
            return False
        self._counts[key] = count + 1
        return True

    def release(self, key: K) -> None:
        """One connection of `key` ended (each successful `acquire` is released once)."""
        count = self._counts.get(key, 0)
        if count <= 1:
            self._counts.pop(key, None)
        else:
            self._counts[key] = count - 1

    def count(self, key: K) -> int:
        return self._counts.get(key, 0)

    def __len__(self) -> int:
        """How many keys hold at least one connection."""
        return len(self._counts)
