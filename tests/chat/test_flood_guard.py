"""FloodGuard's timing on trio's autojump clock: buckets refill by the event loop's clock, so
a client that waits the hinted time is let in again and one that waits less is not, and a
client's allowance of refused frames refills too. No server or socket is involved, so the
clock jumps over every wait and each is exact."""

from __future__ import annotations

from datetime import datetime

import trio
import trio.testing

from chat.client import Client
from chat.flood import CLOSE_POLICY_VIOLATION, FloodGuard
from classroom.ratelimit import EVENT_RATES, REFUSALS, retry_hint
from classroom.rules import Role
from storage import User

STUDENT = EVENT_RATES[Role.STUDENT]
# Clock readings are floats: step a hair past a refill moment rather than onto it.
HAIR = 0.001


def a_client() -> Client:
    return Client(user=User(id=1, username="ada", display_name="Ada",
                            created_at=datetime(2026, 1, 2, 3, 4, 5)))


def spend_burst(guard: FloodGuard, client: Client) -> None:
    for _ in range(int(STUDENT.burst)):
        assert guard.admit(client, None)


async def test_a_client_over_the_rate_is_let_in_after_the_hinted_wait_not_before(
        autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(60):
        guard, client = FloodGuard(), a_client()
        spend_burst(guard, client)
        refused_at = trio.current_time()
        assert not guard.admit(client, None)
        assert len(client.outbox) == 1  # the rate_limited answer
        hint = retry_hint(1 / STUDENT.per_second)
        await trio.sleep_until(refused_at + hint - 10 * HAIR)
        assert not guard.admit(client, None)
        await trio.sleep_until(refused_at + hint + HAIR)
        assert guard.admit(client, None)
        assert not guard.admit(client, None)  # one token came back, not more
        assert client.close_code != CLOSE_POLICY_VIOLATION


async def test_refusals_refill_so_only_a_client_that_keeps_hammering_is_disconnected(
        autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(60):
        guard, client = FloodGuard(), a_client()
        spend_burst(guard, client)
        for _ in range(int(REFUSALS.burst)):
            assert not guard.admit(client, None)
        assert client.close_code != CLOSE_POLICY_VIOLATION
        # A second later: five events' worth of tokens and one more refusal are back.
        await trio.sleep(1 + HAIR)
        for _ in range(int(STUDENT.per_second)):
            assert guard.admit(client, None)
        assert not guard.admit(client, None)
        assert client.close_code != CLOSE_POLICY_VIOLATION
        assert not guard.admit(client, None)
        assert client.close_code == CLOSE_POLICY_VIOLATION
