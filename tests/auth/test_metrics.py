"""GET /metrics: requests by route template and status, latency, login outcomes.

The counters are process-wide (one registry per process, as in production), so each test
compares before and after rather than absolute values.
"""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.auth.conftest import PASSWORD, Account

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def grew(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


async def test_requests_are_counted_by_route_template_and_status(
    client: httpx.AsyncClient, admin: Account
) -> None:
    before = await scrape(client)
    missing = "00000000-0000-0000-0000-000000000000"
    assert (await client.get(f"/users/{missing}", headers=admin.headers)).status_code == 404
    assert (await client.get("/auth/me", headers=admin.headers)).status_code == 200
    after = await scrape(client)
    route = {"method": "GET", "route": "/users/{user_id}", "status": "404"}
    assert grew(before, after, "auth_http_requests_total", **route) == 1
    me = {"method": "GET", "route": "/auth/me"}
    assert grew(before, after, "auth_http_requests_total", **me, status="200") == 1
    assert grew(before, after, "auth_http_request_duration_seconds_count", **me) == 1
    assert not [labels for _, labels in after if ("route", f"/users/{missing}") in labels]


async def test_login_outcomes_are_counted_without_names(
    client: httpx.AsyncClient, admin: Account
) -> None:
    before = await scrape(client)
    ok = await client.post("/auth/token", data={"username": admin.username, "password": PASSWORD})
    assert ok.status_code == 200
    bad = await client.post(
        "/auth/token", data={"username": admin.username, "password": "wrong-password"}
    )
    assert bad.status_code == 401
    after = await scrape(client)
    assert grew(before, after, "auth_logins_total", outcome="success") == 1
    assert grew(before, after, "auth_logins_total", outcome="invalid_credentials") == 1
    text = (await client.get("/metrics")).text
    assert admin.username not in text
    assert "/metrics" not in (await client.get("/openapi.json")).text


async def test_metrics_are_not_served_through_a_proxy(client: httpx.AsyncClient) -> None:
    """The ingress routes `/` to the auth service: what it relays must not reach /metrics."""
    relayed = await client.get("/metrics", headers={"X-Forwarded-For": "198.51.100.7"})
    assert relayed.status_code == 404
    assert relayed.json() == {"detail": "not found"}
