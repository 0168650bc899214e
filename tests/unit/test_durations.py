import pytest

from rtanalytics.core.durations import format_duration, format_timestamp, parse_duration, parse_timestamp


@pytest.mark.parametrize(
    ("text", "ms"), [("500ms", 500), ("1s", 1_000), ("5m", 300_000), ("2h", 7_200_000), ("1d", 86_400_000)]
)
def test_durations_parse_and_format(text: str, ms: int) -> None:
    assert parse_duration(text) == ms
    assert format_duration(ms) == text


@pytest.mark.parametrize("bad", ["", "5", "m", "1.5m", "-1m", "0s", "5 m", "5w", 5, None])
def test_bad_durations_say_what_is_accepted(bad: object) -> None:
    with pytest.raises(ValueError, match=r"duration|longer than zero"):
        parse_duration(bad)


def test_timestamps_in_rfc3339_and_epoch() -> None:
    assert parse_timestamp("2024-01-01T00:00:00Z") == 1_704_067_200.0
    assert parse_timestamp("2024-01-01T01:00:00+01:00") == 1_704_067_200.0
    assert parse_timestamp(1_704_067_200) == 1_704_067_200.0
    assert parse_timestamp(1_704_067_200.5) == 1_704_067_200.5
    assert format_timestamp(1_704_067_200.0) == "2024-01-01T00:00:00Z"
    assert format_timestamp(1_704_067_200.25) == "2024-01-01T00:00:00.250Z"


@pytest.mark.parametrize("bad", ["yesterday", True, float("nan"), float("inf"), [], {}])
def test_bad_timestamps(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(bad)
