import pytest

from protocol.addresses import ConnectionCounts, address_key


def test_counts_stop_at_the_limit_per_key_and_release_frees_a_slot() -> None:
    counts: ConnectionCounts[str] = ConnectionCounts(2)
    assert counts.acquire("a") and counts.acquire("a")
    assert not counts.acquire("a")
    assert counts.acquire("b")
    assert counts.count("a") == 2 and len(counts) == 2
    counts.release("a")
    assert counts.acquire("a")
    for _ in range(2):
        counts.release("a")
    counts.release("b")
    assert len(counts) == 0 and counts.count("a") == 0
    with pytest.raises(ValueError):
        ConnectionCounts(0)


def test_address_keys() -> None:
    assert address_key("127.0.0.2") == "127.0.0.2"
    assert address_key("::ffff:10.1.2.3") == "10.1.2.3"
    # Every address of one IPv6 /64 counts as one client.
    assert address_key("2001:db8:1:2::1") == address_key("2001:db8:1:2:ffff::9")
    assert address_key("2001:db8:1:2::1") != address_key("2001:db8:1:3::1")
    assert address_key("fe80::1%eth0") == "fe80::/64"
    assert address_key("") == ""
