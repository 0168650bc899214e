"""Alert rules end to end in-process: validation, evaluation on a manual clock, real delivery."""

from __future__ import annotations

import pytest

from rtanalytics.adapters.clock import ManualClock
from rtanalytics.bootstrap import App, bootstrap
from rtanalytics.config import Config
from rtanalytics.core.alerting import RetryPolicy
from rtanalytics.core.errors import ValidationError
from tests.unit.receivers import HttpReceiver, SmtpReceiver

NOW = 1_700_000_000.0
SEED_ALERT = {
    "alert_name": "High Error Rate",
    "metric": "api.errors.rate",
    "condition": {"operator": ">", "threshold": 0.05, "duration": "5m"},
    "actions": ["email", "slack"],
}


def make(clock: ManualClock, **config) -> App:
    return bootstrap(Config(**config), clock=clock, retry=RetryPolicy(attempts=4, first_delay_s=0.01))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


async def test_bare_actions_need_their_settings(clock: ManualClock) -> None:
    app = make(clock)
    with pytest.raises(ValidationError) as caught:
        await app.alerts.create("default", SEED_ALERT)
    said = [(p.field, p.message) for p in caught.value.details]
    assert any(f == "actions[0]" and "RTA_SMTP_HOST" in m for f, m in said)
    assert any(f == "actions[0]" and "RTA_ALERT_EMAIL_TO" in m for f, m in said)
    assert any(f == "actions[1]" and "RTA_SLACK_WEBHOOK_URL" in m for f, m in said)


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"condition": {"operator": "=>", "threshold": 1}}, "condition.operator", "one of"),
        ({"condition": {"operator": ">", "threshold": "high"}}, "condition.threshold", "finite number"),
        (
            {"condition": {"operator": ">", "threshold": 1, "duration": "5 minutes"}},
            "condition.duration",
            "duration",
        ),
        ({"metric": "bad metric"}, "metric", "must match"),
        ({"alert_name": ""}, "alert_name", "required"),
        ({"actions": ["pager"]}, "actions[0]", "unknown action"),
        ({"actions": [{"type": "webhook", "url": "ftp://x"}]}, "actions[0].url", "http"),
        ({"actions": [{"type": "email", "to": ["not-an-address"]}]}, "actions[0].to", "email addresses"),
        ({"aggregation": "median"}, "aggregation", "one of"),
        ({"aggregation": "percentile"}, "aggregation", "p99"),
        ({"filters": {"tags.k": {"like": "x"}}}, "filters.tags.k.like", "unknown operator"),
        ({"resolve_duration": "soon"}, "resolve_duration", "duration"),
        ({"severity": "meh"}, "severity", "one of"),
        ({"no_data": "maybe"}, "no_data", "alerting"),
        ({"colour": "red"}, "colour", "unknown field"),
    ],
)
async def test_each_bad_rule_names_its_field(
    clock: ManualClock, change: dict, field: str, words: str
) -> None:
    app = make(
        clock,
        smtp_host="127.0.0.1",
        alert_email_to=("ops@example.com",),
        slack_webhook_url="http://127.0.0.1:9/x",
    )
    with pytest.raises(ValidationError) as caught:
        await app.alerts.create("default", {**SEED_ALERT, **change})
    assert any(p.field == field and words in p.message for p in caught.value.details), caught.value.details


async def test_every_problem_is_reported_at_once(clock: ManualClock) -> None:
    app = make(clock)
    with pytest.raises(ValidationError) as caught:
        await app.alerts.create(
            "default",
            {"metric": "x y", "condition": {"operator": "~", "threshold": None}, "actions": ["sms"]},
        )
    assert {p.field for p in caught.value.details} >= {
        "alert_name",
        "metric",
        "condition.operator",
        "condition.threshold",
        "actions[0]",
    }


async def ingest_rate(app: App, value: float) -> None:
    result = await app.engine.ingest([{"name": "api.errors.rate", "type": "average", "value": value}])
    assert result.accepted == 1


async def test_seed_alert_fires_after_five_minutes_and_resolves(clock: ManualClock) -> None:
    with SmtpReceiver() as smtp:
        async with HttpReceiver() as slack:
            app = make(
                clock,
                smtp_host="127.0.0.1",
                smtp_port=smtp.port,
                alert_email_to=("oncall@example.com",),
                slack_webhook_url=slack.url,
            )
            rule = await app.alerts.create("default", SEED_ALERT)
            seen = []
            for _ in range(12):  # 0.1 every 30 s: above the threshold for 5.5 minutes
                await ingest_rate(app, 0.1)
                await app.alerts.evaluate_noticed()
                seen.append(app.alerts.instances(rule)[0].state.value)
                clock.advance(30)
            assert seen[:10] == ["pending"] * 10 and seen[10] == "firing"  # fires at t = 5 min
            await app.alerts.drain()
            assert len(smtp.messages) == 1 and len(slack.bodies) == 1
            email = smtp.messages[0]
            assert email["To"] == "oncall@example.com" and email["Subject"].startswith(
                "[FIRING] High Error Rate"
            )
            assert "api.errors.rate is 0.1 (condition: > 0.05)" in email.get_payload()
            assert "FIRING" in slack.bodies[0]["text"] and "0.05" in slack.bodies[0]["text"]
            clock.advance(60)  # the window (1m) forgets the high values
            states = []
            for _ in range(12):  # 0.01 every 30 s: below for 5.5 minutes
                await ingest_rate(app, 0.01)
                await app.alerts.evaluate_noticed()
                states.append(app.alerts.instances(rule)[0].state.value)
                clock.advance(30)
            assert "resolved" in states and states.index("resolved") == 10
            await app.alerts.drain()
            assert len(smtp.messages) == 2 and smtp.messages[1]["Subject"].startswith("[RESOLVED]")
            assert len(slack.bodies) == 2 and "RESOLVED" in slack.bodies[1]["text"]
            kinds = [e.kind for e in await app.alerts.events("default", rule.id)]
            assert (
                kinds.count("firing") == 1 and kinds.count("resolved") == 1 and kinds.count("delivered") == 4
            )
            await app.aclose()


async def test_a_receiver_failing_twice_gets_exactly_one_delivery(clock: ManualClock) -> None:
    async with HttpReceiver(statuses=[500, 503]) as hook:
        app = make(clock)
        rule = await app.alerts.create(
            "default",
            {
                "alert_name": "Queue",
                "metric": "queue.depth",
                "condition": {"operator": ">=", "threshold": 10},
                "actions": [{"type": "webhook", "url": hook.url}],
                "severity": "critical",
            },
        )
        await app.engine.ingest([{"name": "queue.depth", "type": "max", "value": 12}])
        assert await app.alerts.evaluate_noticed() == 1
        await app.alerts.drain()
        assert hook.attempts == 3 and len(hook.bodies) == 1
        body = hook.bodies[0]
        assert body["state"] == "firing" and body["value"] == 12 and body["severity"] == "critical"
        assert body["condition"] == {"operator": ">=", "threshold": 10}
        events = await app.alerts.events("default", rule.id)
        assert [(e.kind, e.attempt) for e in reversed(events)] == [
            ("firing", None),
            ("delivery_failed", 1),
            ("delivery_failed", 2),
            ("delivered", 3),
        ]
        assert "HTTP 500" in events[2].detail
        await app.aclose()


async def test_a_dead_receiver_never_blocks_evaluation(clock: ManualClock) -> None:
    app = make(clock)
    await app.alerts.create(
        "default",
        {
            "alert_name": "Dead",
            "metric": "m",
            "condition": {"operator": ">", "threshold": 0},
            "actions": [{"type": "webhook", "url": "http://127.0.0.1:9/nothing-listens"}],
        },
    )
    await app.engine.ingest([{"name": "m", "type": "max", "value": 1}])
    assert await app.alerts.evaluate_noticed() == 1  # returns at once; delivery retries on its own
    await app.alerts.drain()
    rule = (await app.alerts.rules("default"))[0]
    events = await app.alerts.events("default", rule.id)
    assert events[0].kind == "delivery_failed" and "giving up" in events[0].detail
    await app.aclose()


async def test_group_by_gives_one_instance_per_group(clock: ManualClock) -> None:
    app = make(clock)
    rule = await app.alerts.create(
        "default",
        {
            "alert_name": "Slow",
            "metric": "latency",
            "condition": {"operator": ">", "threshold": 100},
            "group_by": ["endpoint"],
        },
    )
    await app.engine.ingest(
        [
            {"name": "latency", "type": "average", "value": 250, "tags": {"endpoint": "/a"}},
            {"name": "latency", "type": "average", "value": 20, "tags": {"endpoint": "/b"}},
        ]
    )
    assert await app.alerts.evaluate_noticed() == 1
    states = {i.group["endpoint"]: i.state.value for i in app.alerts.instances(rule)}
    assert states == {"/a": "firing", "/b": "ok"}
    clock.advance(120)  # no data any more: /a resolves (no_data counts as ok), both show no_data
    assert await app.alerts.tick() == 1
    assert {i.state.value for i in app.alerts.instances(rule)} == {"resolved", "no_data"}
