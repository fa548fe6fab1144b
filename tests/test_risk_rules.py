"""The automation measure on its own (pure, no server): the rate at 50 vs 51 actions in
5 s, the regularity at a coefficient of variation just under and over the threshold, likes
left out of the regularity, and an empty or short record judged clean."""

from __future__ import annotations

from server.config import Settings
from server.risk.rules import LIKE_REFUSED, automation, parse_action

S = Settings()  # 10 actions/s for 5 s; 20 intervals, CV 0.05


def newest_first(gaps_ms: list[int], kind: str = "gift", start: int = 1_000_000) -> list[tuple[int, str]]:
    """Actions at these gaps (oldest first), returned newest first as the record keeps them."""
    times = [start]
    for g in gaps_ms:
        times.append(times[-1] + g)
    return [(t, kind) for t in reversed(times)]


def uneven(n: int, around: int) -> list[int]:
    """n gaps alternating ±40% around `around`: far from regular."""
    return [around * 6 // 10 if i % 2 else around * 14 // 10 for i in range(n)]


def test_rate_is_judged_at_more_than_rate_times_window_actions() -> None:
    """50 uneven actions inside 5 s are a person at 10/s; 51 are automation_rate."""
    fifty = newest_first(uneven(49, 99))  # 50 actions spanning 49 × 99 ms < 5 s
    assert fifty[0][0] - fifty[-1][0] < 5000
    assert automation(fifty, S) is None
    fiftyone = newest_first(uneven(50, 99))
    assert fiftyone[0][0] - fiftyone[-1][0] < 5000
    assert automation(fiftyone, S) == "automation_rate"


def test_regularity_is_judged_by_the_coefficient_of_variation() -> None:
    """20 intervals of 200 ms ± 8 (CV 0.04) are a machine; ± 12 (CV 0.06) pass."""
    # So do 19 perfectly even intervals: too few to judge.
    assert automation(newest_first([192, 208] * 10), S) == "automation_regular"
    assert automation(newest_first([188, 212] * 10), S) is None
    assert automation(newest_first([200] * 19), S) is None
    assert automation(newest_first([200] * 20), S) == "automation_regular"


def test_likes_count_for_the_rate_but_not_the_regularity() -> None:
    """Likes on a timer are never automation_regular; 51 of them in 5 s are still automation_rate."""
    # Likes on a timer are clients batching taps.
    assert automation(newest_first([200] * 30, kind="like"), S) is None
    assert automation(newest_first([90] * 50, kind="like"), S) == "automation_rate"


def test_an_empty_record_is_clean_and_entries_parse() -> None:
    """No actions, no verdict; a recorded entry reads back as (ms, kind)."""
    assert automation([], S) is None
    assert parse_action("1700000000123:grab") == (1_700_000_000_123, "grab")


def test_the_like_speed_rules_refusals_count_for_the_rate_only() -> None:
    """Refused likes on a timer are never automation_regular, but count toward automation_rate (51 in 5 s)."""
    assert automation(newest_first([200] * 30, kind=LIKE_REFUSED), S) is None
    mixed = [(t, LIKE_REFUSED if i % 3 else "like") for i, (t, _) in
             enumerate(newest_first([90] * 50))]
    assert automation(mixed, S) == "automation_rate"
    assert automation(mixed[:50], S) is None
