"""The alerts API: every route and status code, validation, versions and tenant isolation."""

from __future__ import annotations

import pytest

RULE = {
    "alert_name": "High Error Rate",
    "metric": "api.errors.rate",
    "condition": {"operator": ">", "threshold": 0.05, "duration": "5m"},
    "actions": [{"type": "webhook", "url": "http://127.0.0.1:9/hook"}],
    "group_by": ["endpoint"],
    "severity": "critical",
}


@pytest.fixture
def alerts_app(make_app):
    return make_app(
        slack_webhook_url="http://127.0.0.1:9/slack", smtp_host="127.0.0.1", alert_email_to=("a@b.c",)
    )


async def test_crud(alerts_app) -> None:
    client = alerts_app.asgi_client
    _, created = await client.post("/api/v1/alerts", json=RULE)
    assert created.status == 201
    body = created.json
    rule_id = body["id"]
    assert body["alert_name"] == "High Error Rate" and body["version"] == 1 and body["state"] == "ok"
    _, listed = await client.get("/api/v1/alerts")
    assert [a["id"] for a in listed.json["alerts"]] == [rule_id]
    _, got = await client.get(f"/api/v1/alerts/{rule_id}")
    assert got.status == 200 and got.json["condition"] == RULE["condition"]
    changed = {**RULE, "condition": {"operator": ">", "threshold": 0.1, "duration": "1m"}, "version": 1}
    _, updated = await client.put(f"/api/v1/alerts/{rule_id}", json=changed)
    assert (
        updated.status == 200
        and updated.json["version"] == 2
        and updated.json["condition"]["threshold"] == 0.1
    )
    _, stale = await client.put(f"/api/v1/alerts/{rule_id}", json={**RULE, "version": 1})
    assert stale.status == 409 and "version 2" in stale.json["error"]["message"]
    _, events = await client.get(f"/api/v1/alerts/{rule_id}/events")
    assert events.status == 200 and events.json == {"events": []}
    _, deleted = await client.delete(f"/api/v1/alerts/{rule_id}")
    assert deleted.status == 204
    _, gone = await client.get(f"/api/v1/alerts/{rule_id}")
    assert gone.status == 404


async def test_the_seed_body_is_accepted_with_configured_defaults(alerts_app) -> None:
    seed = {
        "alert_name": "High Error Rate",
        "metric": "api.errors.rate",
        "condition": {"operator": ">", "threshold": 0.05, "duration": "5m"},
        "actions": ["email", "slack"],
    }
    _, created = await alerts_app.asgi_client.post("/api/v1/alerts", json=seed)
    assert created.status == 201 and created.json["actions"] == ["email", "slack"]


async def test_bare_actions_without_settings_are_400(app) -> None:
    _, response = await app.asgi_client.post("/api/v1/alerts", json={**RULE, "actions": ["slack"]})
    assert response.status == 400
    assert response.json["error"]["details"][0] == {
        "field": "actions[0]",
        "message": 'bare `slack` needs RTA_SLACK_WEBHOOK_URL (or give {"type": "slack", "webhook_url": ...})',
    }


async def test_validation_collects_every_problem(alerts_app) -> None:
    bad = {
        "alert_name": "",
        "metric": "a b",
        "condition": {"operator": "=~", "threshold": "x", "duration": "-1m"},
    }
    _, response = await alerts_app.asgi_client.post("/api/v1/alerts", json=bad)
    assert response.status == 400
    fields = {d["field"] for d in response.json["error"]["details"]}
    assert fields >= {
        "alert_name",
        "metric",
        "condition.operator",
        "condition.threshold",
        "condition.duration",
    }


async def test_missing_rules_and_bad_parameters(alerts_app) -> None:
    client = alerts_app.asgi_client
    for method in ("get", "delete"):
        _, response = await getattr(client, method)("/api/v1/alerts/nope")
        assert response.status == 404
    _, response = await client.put("/api/v1/alerts/nope", json=RULE)
    assert response.status == 404
    _, response = await client.get("/api/v1/alerts/nope/events")
    assert response.status == 404
    _, created = await client.post("/api/v1/alerts", json=RULE)
    _, response = await client.get(f"/api/v1/alerts/{created.json['id']}/events?limit=0")
    assert response.status == 400 and response.json["error"]["details"][0]["field"] == "limit"
    _, response = await client.put(f"/api/v1/alerts/{created.json['id']}", json={**RULE, "version": "two"})
    assert response.status == 400 and response.json["error"]["details"][0]["field"] == "version"
    _, response = await client.post("/api/v1/alerts", content=b"not json")
    assert response.status == 400


async def test_tenants_see_only_their_own_alerts(alerts_app) -> None:
    client = alerts_app.asgi_client
    _, created = await client.post("/api/v1/alerts?tenant_id=a", json=RULE)
    _, other = await client.get(f"/api/v1/alerts/{created.json['id']}?tenant_id=b")
    assert other.status == 404
    _, listed = await client.get("/api/v1/alerts?tenant_id=b")
    assert listed.json == {"alerts": []}
    _, deleted = await client.delete(f"/api/v1/alerts/{created.json['id']}?tenant_id=b")
    assert deleted.status == 404


async def test_instances_and_events_after_evaluation(alerts_app) -> None:
    client = alerts_app.asgi_client
    rule = {**RULE, "condition": {"operator": ">", "threshold": 0.05, "duration": "0s"}, "actions": []}
    _, created = await client.post("/api/v1/alerts", json=rule)
    await client.post(
        "/api/v1/metrics",
        json={
            "metrics": [
                {"name": "api.errors.rate", "type": "average", "value": 0.2, "tags": {"endpoint": "/x"}}
            ]
        },
    )
    await alerts_app.ctx.rta.alerts.evaluate_noticed()
    _, got = await client.get(f"/api/v1/alerts/{created.json['id']}")
    assert got.json["state"] == "firing"
    assert got.json["instances"] == [
        {
            "group": {"endpoint": "/x"},
            "state": "firing",
            "value": 0.2,
            "since": got.json["instances"][0]["since"],
        }
    ]
    _, events = await client.get(f"/api/v1/alerts/{created.json['id']}/events")
    assert events.json["events"][0]["kind"] == "firing" and events.json["events"][0]["group"] == {
        "endpoint": "/x"
    }
