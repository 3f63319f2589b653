"""Namespaces, bridges, veths and link faults (nftables), through `ip`, `nft` and `sysctl`.

Every command has a time limit. Nothing here touches the root namespace except the one veth
end `netlab-db` (created, addressed, deleted) and its own sysctl.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from topology import DB_ADDRESS, DB_LINK, PREFIX, SUBNET, Tree

FAULT_TABLE = "netlab_fault"  # nft table (family bridge) in a switch namespace
TIMEOUT = 10.0


class CommandError(RuntimeError):
    pass


def run(argv: Sequence[str], *, check: bool = True, timeout: float = TIMEOUT,
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                              input=stdin, check=False)
    except subprocess.TimeoutExpired as exc:
        raise CommandError(f"timed out after {timeout} s: {' '.join(argv)}") from exc
    if check and done.returncode != 0:
        raise CommandError(f"{' '.join(argv)} -> {done.returncode}: {done.stderr.strip()}")
    return done


def in_ns(netns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["ip", "netns", "exec", netns, *argv], check=check)


def ours() -> list[str]:
    """Every namespace this tool made (by name prefix), whether or not the state file
    remembers them."""
    listed = run(["ip", "netns", "list"], check=False).stdout.split("\n")
    return sorted(line.split()[0] for line in listed
                  if line.strip() and line.split()[0].startswith(PREFIX))


def pids_in(netns: str) -> list[int]:
    out = run(["ip", "netns", "pids", netns], check=False).stdout
    return [int(p) for p in out.split()]


def root_link_exists() -> bool:
    return Path("/sys/class/net", DB_LINK).exists()


# -- building ---------------------------------------------------------------------------


def build(tree: Tree) -> None:
    """Namespaces, bridges, links and addresses of the whole tree."""
    prefix_len = SUBNET.prefixlen
    for node in tree.nodes:
        if node.kind == "db":
            continue
        run(["ip", "netns", "add", node.netns])
        # No IPv6 (no router solicitations, no DAD): the tree speaks 10.77.0.0/16 only.
        in_ns(node.netns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
              "net.ipv6.conf.default.disable_ipv6=1")
        in_ns(node.netns, "ip", "link", "set", "lo", "up")
        if node.kind == "switch":
            in_ns(node.netns, "ip", "link", "add", "br0", "type", "bridge",
                  "stp_state", "0", "forward_delay", "0")
            in_ns(node.netns, "ip", "link", "set", "br0", "up")
    for child, parent in tree.links:
        node = tree.node(child)
        parent_ns = tree.node(parent).netns
        port = f"p-{child}"
        if node.kind == "db":
            run(["ip", "link", "add", DB_LINK, "type", "veth", "peer", "name", port,
                 "netns", parent_ns])
            run(["sysctl", "-qw", f"net.ipv6.conf.{DB_LINK}.disable_ipv6=1"])
            run(["ip", "addr", "add", f"{DB_ADDRESS}/{prefix_len}", "dev", DB_LINK])
            run(["ip", "link", "set", DB_LINK, "up"])
        else:
            end = "up0" if node.kind == "switch" else "eth0"
            run(["ip", "link", "add", port, "netns", parent_ns, "type", "veth",
                 "peer", "name", end, "netns", node.netns])
            if node.kind == "switch":
                in_ns(node.netns, "ip", "link", "set", end, "master", "br0")
            else:
                in_ns(node.netns, "ip", "addr", "add", f"{node.address}/{prefix_len}",
                      "dev", end)
            in_ns(node.netns, "ip", "link", "set", end, "up")
        in_ns(parent_ns, "ip", "link", "set", port, "master", "br0")
        in_ns(parent_ns, "ip", "link", "set", port, "up")


def destroy() -> list[str]:
    """Delete our namespaces (their veths go with them) and the root veth end."""
    gone = []
    for netns in ours():
        run(["ip", "netns", "del", netns], check=False)
        gone.append(netns)
    if root_link_exists():
        run(["ip", "link", "del", DB_LINK], check=False)
        gone.append(DB_LINK)
    return gone


# -- faults -----------------------------------------------------------------------------


def drop(tree: Tree, link: tuple[str, str], percent: int) -> str:
    """Drop `percent` % of the frames crossing a link, each way, at the parent switch's port
    (nftables bridge family, numgen random). Replaces an earlier drop on that link."""
    child, parent = link
    netns = tree.node(parent).netns
    port = f"p-{child}"
    chain = f"drop_{child}"
    script: list[str] = []
    have = in_ns(netns, "nft", "list", "table", "bridge", FAULT_TABLE, check=False)
    if have.returncode != 0:
        script.append(f"add table bridge {FAULT_TABLE}")
    elif f"chain {chain} " in have.stdout:
        script.append(f"delete chain bridge {FAULT_TABLE} {chain}")
    # nft's numgen compares with 0..99 only: 100 % (a partition) is "<= 99".
    test = f"< {percent}" if percent < 100 else "<= 99"
    if percent > 0:
        script += [
            f"add chain bridge {FAULT_TABLE} {chain} "
            f"{{ type filter hook forward priority 0; policy accept; }}",
            f"add rule bridge {FAULT_TABLE} {chain} iifname \"{port}\" "
            f"numgen random mod 100 {test} counter drop",
            f"add rule bridge {FAULT_TABLE} {chain} oifname \"{port}\" "
            f"numgen random mod 100 {test} counter drop",
        ]
    run(["ip", "netns", "exec", netns, "nft", "-f", "-"], stdin="\n".join(script) + "\n")
    return f"{netns} port {port}"


def faults(tree: Tree) -> list[str]:
    """Active drops, one line each, with how many frames they dropped (both ways)."""
    lines: list[list[Any]] = []
    for name in ("s0", "s1", "s2"):
        netns = tree.node(name).netns
        listed = in_ns(netns, "nft", "list", "table", "bridge", FAULT_TABLE, check=False)
        if listed.returncode != 0:
            continue
        chain = ""
        for raw in listed.stdout.splitlines():
            line = raw.strip()
            if line.startswith("chain drop_"):
                chain = line.split()[1][len("drop_"):]
            elif "numgen" in line:
                percent = ("100" if "<= 99" in line
                           else line.split("<")[1].split()[0])
                packets = int(line.split("packets")[1].split()[0]) if "packets" in line else 0
                if "iifname" in line:
                    lines.append([f"drop {percent}% on {chain}-{name} (in {netns}", packets])
                elif lines:
                    lines[-1][1] = int(lines[-1][1]) + packets
    return [f"{text}; {packets} frames dropped)" for text, packets in lines]


DELAY_TABLE = "netlab_delay"
DELAY_OFFSET = 10000  # the delaying relay of port P listens on P + DELAY_OFFSET


def redirect_to_delayer(netns: str, ports: list[int]) -> None:
    """Send the host's incoming TCP connections to `ports` through its delaying relays."""
    script = [f"add table ip {DELAY_TABLE}",
              f"add chain ip {DELAY_TABLE} pre {{ type nat hook prerouting priority -100; }}"]
    script += [f"add rule ip {DELAY_TABLE} pre tcp dport {port} counter "
               f"redirect to :{port + DELAY_OFFSET}" for port in ports]
    run(["ip", "netns", "exec", netns, "nft", "-f", "-"], stdin="\n".join(script) + "\n")


def clear_faults() -> None:
    for netns in ours():
        in_ns(netns, "nft", "delete", "table", "bridge", FAULT_TABLE, check=False)
        in_ns(netns, "nft", "delete", "table", "ip", DELAY_TABLE, check=False)
