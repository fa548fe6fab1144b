"""The risk engine's judgements that need no I/O. Pure: the times are passed in."""

from __future__ import annotations

import itertools
import math

from server.config import Settings

# what each kind of request counts as, for the rules (the like speed rule's own refusals
# come in as signals too: `LIKE_REFUSED`)
ACTIONS = {"gift.send": "gift", "envelope.send": "gift", "envelope.grab": "grab",
           "room.like": "like", "group.post": "post"}
# which decisions refuse which actions: a restriction stops gifting, a freeze gifting and
# grabbing, a ban everything
REFUSES = {"restricted": ("gift",), "frozen": ("gift", "grab"),
           "banned": ("gift", "grab", "like", "post")}
# a like request the like speed rule refused (part of it, at least): it counts once more
# for the rate, as its request did
LIKE_REFUSED = "like_refused"
# judged by the rate alone: clients batch taps and send them on a timer
RATE_ONLY = ("like", LIKE_REFUSED)
# the accounts a device's record and a cluster's record keep (the oldest fall out): the
# rules' thresholds stay within them (checked at start-up), or they could never be reached
DEVICE_ACCOUNTS_MAX = 200
DEVICE_ACCOUNTS_KEPT = DEVICE_ACCOUNTS_MAX + 1
CLUSTER_ACCOUNTS_KEPT = 1000
REGULAR_INTERVALS_MIN = 3  # fewer cannot tell a timer from a person


def setting_problems(s: Settings) -> list[str]:
    """Thresholds no record could reach, and a regularity judged on too few intervals."""
    out = []
    if 0 < s.bot_regular_intervals < REGULAR_INTERVALS_MIN:  # (0: refused as every zero is)
        out.append(f"GIFTWIRE_BOT_REGULAR_INTERVALS must be at least {REGULAR_INTERVALS_MIN}: "
                   f"so few intervals look even by chance (one always does), and a person "
                   f"would be banned (it is {s.bot_regular_intervals})")
    if s.device_accounts_max > DEVICE_ACCOUNTS_MAX:
        out.append(f"GIFTWIRE_DEVICE_ACCOUNTS_MAX must be at most {DEVICE_ACCOUNTS_MAX}: a "
                   f"device's record keeps {DEVICE_ACCOUNTS_KEPT} accounts (it is "
                   f"{s.device_accounts_max})")
    if s.cluster_accounts > CLUSTER_ACCOUNTS_KEPT:
        out.append(f"GIFTWIRE_CLUSTER_ACCOUNTS must be at most {CLUSTER_ACCOUNTS_KEPT}: a "
                   f"network's record keeps as many accounts (it is {s.cluster_accounts})")
    return out


def parse_action(entry: str) -> tuple[int, str]:
    """A recorded action, `<ms>:<kind>`."""
    ms, _, kind = entry.partition(":")
    return int(ms), kind


def automation(actions_newest_first: list[tuple[int, str]], s: Settings,
               judged_newest_first: list[tuple[int, str]] | None = None) -> str | None:
    """`automation_rate` when more than `bot_actions_per_s` actions per second came for a
    whole `bot_window_s` (more than rate × window actions in the window ending at the
    newest), `automation_regular` when the last `bot_regular_intervals` intervals are too
    even to be human (their coefficient of variation, stdev / mean, below
    `bot_regular_cv`), else None. Likes (and the like speed rule's refusals) are judged by
    the rate only: clients batch taps and send them on a timer, so their regularity says
    nothing about who taps. `judged_newest_first`: the judged actions as kept apart (the
    last `bot_regular_intervals` + 1 of them, however many likes came between); else they
    are taken from `actions_newest_first`."""
    times_newest_first = [t for t, _ in actions_newest_first]
    if not times_newest_first:
        return None
    newest = times_newest_first[0]
    window_ms = s.bot_window_s * 1000
    in_window = sum(1 for t in times_newest_first if newest - t < window_ms)
    if in_window > s.bot_actions_per_s * s.bot_window_s:
        return "automation_rate"
    n = s.bot_regular_intervals
    judged = [t for t, kind in (actions_newest_first if judged_newest_first is None
                                else judged_newest_first) if kind not in RATE_ONLY]
    if len(judged) > n:
        recent = judged[: n + 1]
        gaps = [a - b for a, b in itertools.pairwise(recent)]
        mean = sum(gaps) / n
        # population variance in floats (statistics.pstdev is exact and ~10× slower; ms
        # gaps are small integers, so the float sum is exact enough for a threshold)
        variance = sum((g - mean) ** 2 for g in gaps) / n
        if mean > 0 and math.sqrt(variance) / mean < float(s.bot_regular_cv):
            return "automation_regular"
    return None


def kept_times(s: Settings) -> int:
    """Action times a user's record keeps for the rate measure."""
    return s.bot_actions_per_s * s.bot_window_s + 1


def kept_judged(s: Settings) -> int:
    """Judged action times a user's record keeps for the regularity measure."""
    return s.bot_regular_intervals + 1
