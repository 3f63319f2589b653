"""The tree, as data: every node's name, namespace, switch and address, and every link.

    s0 (depth 0) -- db: the forwarder to MariaDB, in the root namespace (10.77.0.1)
                 -- bus: a redis-server of its own, the message bus (10.77.0.2:6379)
    +-- s1 (depth 1) -- app1 10.77.1.1, chat1 10.77.1.2, clients c1, c3, ... 10.77.1.10x
    +-- s2 (depth 1) -- app2 10.77.2.1, [chat2 10.77.2.2], clients c2, c4, ... 10.77.2.10x

All of it is one Ethernet segment (10.77.0.0/16): each switch is a namespace holding a
bridge `br0`; a link is a veth pair whose parent end is the bridge port `p-CHILD` in the
parent switch's namespace and whose child end is `eth0` in a host's namespace or `up0`
(enslaved to that switch's own bridge) in a child switch's. Namespaces have no default
route, so nothing in the tree can reach anything but the tree and the forwarder.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Final

PREFIX: Final = "netlab-"  # every namespace this tool makes starts with it
SUBNET: Final = ipaddress.IPv4Network("10.77.0.0/16")
DB_LINK: Final = "netlab-db"  # root-namespace end of the database link
DB_ADDRESS: Final = "10.77.0.1"
DB_PORT: Final = 3306
DB_NAME: Final = "classroom_netlab"
BUS_ADDRESS: Final = "10.77.0.2"
BUS_PORT: Final = 6379
METRICS_PORT: Final = 9101  # each chat server's /metrics and /healthz
HTTP_PORT: Final = 8000
CHAT_PORT: Final = 8001
MAX_CLIENTS: Final = 98


@dataclass(frozen=True)
class Node:
    name: str  # s0, app1, chat2, c3, db, bus
    kind: str  # switch | db | bus | app | chat | client
    parent: str | None  # the switch it hangs from
    address: str | None = None

    @property
    def netns(self) -> str:
        return PREFIX + self.name

    @property
    def depth(self) -> int:
        return 0 if self.name == "s0" else 1 if self.kind == "switch" else 2

    @property
    def http_url(self) -> str:
        return f"http://{self.address}:{HTTP_PORT}"

    @property
    def chat_url(self) -> str:
        return f"ws://{self.address}:{CHAT_PORT}/ws"


@dataclass(frozen=True)
class Tree:
    clients: int
    chats: int

    def __post_init__(self) -> None:
        if not 1 <= self.clients <= MAX_CLIENTS:
            raise ValueError(f"--clients must be 1..{MAX_CLIENTS}")
        if self.chats not in (1, 2):
            raise ValueError("--chats must be 1 or 2")

    @property
    def nodes(self) -> list[Node]:
        nodes = [Node("s0", "switch", None), Node("db", "db", "s0", DB_ADDRESS),
                 Node("bus", "bus", "s0", BUS_ADDRESS),
                 Node("s1", "switch", "s0"), Node("s2", "switch", "s0"),
                 Node("app1", "app", "s1", "10.77.1.1"), Node("app2", "app", "s2", "10.77.2.1"),
                 Node("chat1", "chat", "s1", "10.77.1.2")]
        if self.chats == 2:
            nodes.append(Node("chat2", "chat", "s2", "10.77.2.2"))
        for i in range(1, self.clients + 1):
            side = 1 if i % 2 else 2
            nodes.append(Node(f"c{i}", "client", f"s{side}", f"10.77.{side}.{100 + i}"))
        return nodes

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def of_kind(self, kind: str) -> list[Node]:
        return [n for n in self.nodes if n.kind == kind]

    @property
    def servers(self) -> list[Node]:
        return [n for n in self.nodes if n.kind in ("app", "chat")]

    @property
    def links(self) -> list[tuple[str, str]]:
        """(child, parent switch) for every link."""
        return [(n.name, n.parent) for n in self.nodes if n.parent is not None]

    def link(self, spec: str) -> tuple[str, str]:
        """A link from `child-parent`, `parent-child` or a child's name alone."""
        names = set(spec.split("-"))
        for child, parent in self.links:
            if names in ({child, parent}, {child}):
                return child, parent
        known = ", ".join(f"{c}-{p}" for c, p in self.links)
        raise KeyError(f"no link {spec!r}; links: {known}")


def bus_url() -> str:
    return f"redis://{BUS_ADDRESS}:{BUS_PORT}/0?channel=netlab"


def db_url(host: str = DB_ADDRESS) -> str:
    return f"mysql://root@{host}:{DB_PORT}/{DB_NAME}"


def check_in_tree(host: str) -> None:
    """Refuse any address outside the tree's subnet (the tool talks to nothing else)."""
    if ipaddress.IPv4Address(host) not in SUBNET:
        raise ValueError(f"{host} is outside {SUBNET}")
