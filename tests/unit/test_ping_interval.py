"""Keep-alive pings of streams opened together drift apart (api/following/streams.py)."""

from __future__ import annotations

from api.following.streams import ping_interval_s


def test_each_stream_pings_within_the_setting_and_streams_do_not_share_one_interval() -> None:
    intervals = [ping_interval_s(15.0) for _ in range(1000)]

    assert all(7.5 <= interval <= 15.0 for interval in intervals)
    assert max(intervals) - min(intervals) > 5.0  # spread over most of the range, not one beat
