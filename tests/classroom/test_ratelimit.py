from classroom.ratelimit import EVENT_RATES, Buckets, Rate, TokenBucket, retry_hint
from classroom.rules import Role


def test_bucket_allows_a_burst_then_the_steady_rate() -> None:
    bucket = TokenBucket.full(Rate(burst=3, per_second=2), now=100.0)
    assert [bucket.take(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(100.0) == 0.5  # empty: one token comes back in half a second
    assert bucket.take(100.25) == 0.25  # a refused take costs nothing
    assert bucket.take(100.5) == 0.0
    assert bucket.take(100.5) > 0
    # Idle time refills up to the burst, never beyond.
    assert bucket.take(1000.0) == 0.0 and bucket.tokens == 2
    assert bucket.is_full(1001.0)
    # A clock that steps back (another monotonic source) neither refills nor breaks it.
    assert bucket.take(999.0) == 0.0 and bucket.tokens == 2


def test_buckets_per_key_and_full_ones_are_forgotten() -> None:
    buckets: Buckets[int] = Buckets()
    rate = Rate(burst=1, per_second=1)
    assert buckets.take(1, rate, 0.0) == 0.0
    assert buckets.take(1, rate, 0.0) == 1.0
    assert buckets.take(2, rate, 0.0) == 0.0  # another key has its own
    for key in range(3, Buckets.SWEEP_EVERY + 10):
        buckets.take(key, rate, 10.0 + key)  # each refills long before the sweep
    assert len(buckets) < 20


def test_the_instructor_gets_more_and_hints_round_up() -> None:
    student, instructor = EVENT_RATES[Role.STUDENT], EVENT_RATES[Role.INSTRUCTOR]
    assert instructor.burst > student.burst and instructor.per_second > student.per_second
    assert retry_hint(0.01) == 0.1 and retry_hint(0.2) == 0.2 and retry_hint(1.01) == 1.1
