"""The OpenAPI 3.1 document of the HTTP API, and a self-contained docs page that renders it."""

from __future__ import annotations

from typing import Any

from sanic import Blueprint, HTTPResponse, Request

from rtanalytics import __version__
from rtanalytics.core.metrics import MAX_TAGS, NAME_PATTERN, TAG_KEY_PATTERN, MetricType
from rtanalytics.core.query import FILTER_OPERATORS
from rtanalytics.core.states import AGGREGATIONS
from rtanalytics.entrypoints.http.common import json_response

bp = Blueprint("docs")

_ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "array", "items": {"$ref": "#/components/schemas/Problem"}},
            },
            "required": ["code", "message", "details"],
        }
    },
}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Invalid input",
        401: "No or unknown API key",
        403: "Key of another tenant",
        404: "Not found",
        413: "Too large",
    }
    return {
        str(c): {
            "description": text[c],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for c in codes
    }


def document() -> dict[str, Any]:
    """The OpenAPI document."""
    query_schema = {
        "type": "object",
        "required": ["metrics"],
        "properties": {
            "metrics": {"type": "array", "items": {"type": "string", "pattern": NAME_PATTERN}, "minItems": 1},
            "aggregation": {"type": "string", "enum": list(AGGREGATIONS)},
            "percentiles": {
                "type": "array",
                "items": {"type": "number", "exclusiveMinimum": 0, "maximum": 100},
            },
            "window": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h|d)$"},
            "start_time": {"oneOf": [{"type": "string", "format": "date-time"}, {"type": "number"}]},
            "end_time": {"oneOf": [{"type": "string", "format": "date-time"}, {"type": "number"}]},
            "group_by": {"type": "array", "items": {"type": "string", "pattern": TAG_KEY_PATTERN}},
            "filters": {
                "type": "object",
                "description": "keys 'tags.K'; value a string (equals), a list (any of) or an object of "
                + ", ".join(FILTER_OPERATORS),
            },
            "limit": {"type": "integer", "minimum": 1},
        },
    }
    point_schema = {
        "type": "object",
        "required": ["name", "type"],
        "properties": {
            "name": {"type": "string", "pattern": NAME_PATTERN},
            "type": {"type": "string", "enum": [t.value for t in MetricType]},
            "value": {"oneOf": [{"type": "number"}, {"type": "string"}]},
            "tags": {
                "type": "object",
                "additionalProperties": {"type": "string", "maxLength": 256},
                "maxProperties": MAX_TAGS,
            },
            "timestamp": {"oneOf": [{"type": "string", "format": "date-time"}, {"type": "number"}]},
            "window": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h|d)$"},
        },
    }
    result_schema = {
        "type": "object",
        "properties": {
            "results": {"type": "array", "items": {"type": "object"}},
            "meta": {
                "type": "object",
                "properties": {
                    "resolution": {"type": "string"},
                    "series": {"type": "integer"},
                    "points": {"type": "integer"},
                    "took_ms": {"type": "number"},
                },
            },
        },
    }

    def json_of(ref: str) -> dict[str, Any]:
        return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}

    tenant = {"name": "tenant_id", "in": "query", "required": False, "schema": {"type": "string"}}
    rule_id = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "rtanalytics", "version": __version__},
        "paths": {
            "/api/v1/metrics": {
                "post": {
                    "summary": "Ingest metric points (up to 10,000 points and 10 MiB)",
                    "parameters": [tenant],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["metrics"],
                                    "properties": {
                                        "metrics": {
                                            "type": "array",
                                            "items": {"$ref": "#/components/schemas/Point"},
                                        }
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "202": {
                            "description": "Accepted (some points may be rejected)",
                            "content": json_of("IngestResult"),
                        },
                        **_errors(400, 401, 403, 413),
                    },
                }
            },
            "/api/v1/metrics/{name}/current": {
                "get": {
                    "summary": "The metric's value over its window ending now",
                    "parameters": [
                        {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                        {"name": "window", "in": "query", "schema": {"type": "string"}},
                        {
                            "name": "aggregation",
                            "in": "query",
                            "schema": {"type": "string", "enum": list(AGGREGATIONS)},
                        },
                        {
                            "name": "group_by",
                            "in": "query",
                            "schema": {"type": "string"},
                            "description": "comma-separated tag keys",
                        },
                        tenant,
                    ],
                    "responses": {
                        "200": {"description": "Value", "content": json_of("QueryResult")},
                        **_errors(400, 404),
                    },
                }
            },
            "/api/v1/query": {
                "post": {
                    "summary": "Windowed aggregations sliced by tags",
                    "parameters": [tenant],
                    "requestBody": {"required": True, "content": json_of("Query")},
                    "responses": {
                        "200": {"description": "Results", "content": json_of("QueryResult")},
                        **_errors(400),
                    },
                }
            },
            "/api/v1/export/prometheus": {
                "get": {
                    "summary": "The tenant's metrics and the service's own in the Prometheus text format 0.0.4 "
                    "(OpenMetrics when Accept asks for application/openmetrics-text)",
                    "parameters": [tenant],
                    "responses": {"200": {"description": "Exposition", "content": {"text/plain": {}}}},
                }
            },
            "/api/v1/alerts": {
                "post": {
                    "summary": "Create an alert rule (the seed's shape plus aggregation, window, filters, group_by, "
                    "resolve_duration, severity, no_data, dashboard_id)",
                    "parameters": [tenant],
                    "requestBody": {"required": True, "content": json_of("AlertRule")},
                    "responses": {"201": {"description": "Created"}, **_errors(400)},
                },
                "get": {
                    "summary": "Every alert rule with its instances' states",
                    "parameters": [tenant],
                    "responses": {"200": {"description": "Rules"}},
                },
            },
            "/api/v1/alerts/{id}": {
                "get": {
                    "summary": "One rule",
                    "parameters": [rule_id, tenant],
                    "responses": {"200": {"description": "Rule"}, **_errors(404)},
                },
                "put": {
                    "summary": "Replace a rule; with `version`, 409 when stale",
                    "parameters": [rule_id, tenant],
                    "requestBody": {"required": True, "content": json_of("AlertRule")},
                    "responses": {
                        "200": {"description": "Rule"},
                        "409": {"description": "Stale version"},
                        **_errors(400, 404),
                    },
                },
                "delete": {
                    "summary": "Delete a rule",
                    "parameters": [rule_id, tenant],
                    "responses": {"204": {"description": "Deleted"}, **_errors(404)},
                },
            },
            "/api/v1/alerts/{id}/events": {
                "get": {
                    "summary": "Transitions and deliveries, newest first",
                    "parameters": [rule_id, tenant],
                    "responses": {"200": {"description": "Events"}, **_errors(400, 404)},
                },
            },
            "/api/v1/dashboards": {
                "post": {
                    "summary": "Create a dashboard (widgets on a 12-column grid, queries as /api/v1/query)",
                    "parameters": [tenant],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "responses": {"201": {"description": "Created"}, **_errors(400)},
                },
                "get": {
                    "summary": "Dashboards, newest first; ?limit= ?offset= ?name=",
                    "parameters": [tenant],
                    "responses": {"200": {"description": "A page of dashboards"}, **_errors(400)},
                },
            },
            "/api/v1/dashboards/{id}": {
                "get": {
                    "summary": "One dashboard",
                    "parameters": [rule_id, tenant],
                    "responses": {"200": {"description": "Dashboard"}, **_errors(404)},
                },
                "put": {
                    "summary": "Replace a dashboard; with `version`, 409 when stale",
                    "parameters": [rule_id, tenant],
                    "responses": {
                        "200": {"description": "Dashboard"},
                        "409": {"description": "Stale version"},
                        **_errors(400, 404),
                    },
                },
                "delete": {
                    "summary": "Delete a dashboard",
                    "parameters": [rule_id, tenant],
                    "responses": {"204": {"description": "Deleted"}, **_errors(404)},
                },
            },
            "/api/v1/dashboards/{id}/data": {
                "get": {
                    "summary": "Every widget's query evaluated",
                    "parameters": [rule_id, tenant],
                    "responses": {"200": {"description": "Results by widget id"}, **_errors(404)},
                },
            },
            "/ws/metrics/{client_id}": {
                "get": {
                    "summary": "WebSocket: live queries (subscribe / unsubscribe / ping; metric_data, alert, lagged)",
                    "parameters": [
                        {"name": "client_id", "in": "path", "required": True, "schema": {"type": "string"}},
                        tenant,
                    ],
                    "responses": {"101": {"description": "Switching protocols"}},
                }
            },
            "/health": {"get": {"summary": "Liveness", "responses": {"200": {"description": "Serving"}}}},
            "/api/v1/health": {
                "get": {
                    "summary": "Readiness: backends and sizes",
                    "responses": {
                        "200": {"description": "Ready"},
                        "503": {"description": "A backend is down"},
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "Point": point_schema,
                "Query": query_schema,
                "QueryResult": result_schema,
                "IngestResult": {
                    "type": "object",
                    "properties": {
                        "accepted": {"type": "integer"},
                        "rejected": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "index": {"type": "integer"},
                                    "error": {"type": "string"},
                                    "details": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Problem"},
                                    },
                                },
                            },
                        },
                    },
                },
                "Problem": {
                    "type": "object",
                    "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                },
                "AlertRule": {
                    "type": "object",
                    "required": ["alert_name", "metric", "condition"],
                    "properties": {
                        "alert_name": {"type": "string"},
                        "metric": {"type": "string", "pattern": NAME_PATTERN},
                        "condition": {
                            "type": "object",
                            "required": ["operator", "threshold"],
                            "properties": {
                                "operator": {"enum": [">", ">=", "<", "<=", "==", "!="]},
                                "threshold": {"type": "number"},
                                "duration": {"type": "string"},
                            },
                        },
                        "actions": {
                            "type": "array",
                            "items": {"oneOf": [{"enum": ["email", "slack", "webhook"]}, {"type": "object"}]},
                        },
                        "aggregation": {"type": "string"},
                        "window": {"type": "string"},
                        "filters": {"type": "object"},
                        "group_by": {"type": "array", "items": {"type": "string"}},
                        "resolve_duration": {"type": "string"},
                        "severity": {"enum": ["info", "warning", "critical"]},
                        "no_data": {"enum": ["ok", "alerting"]},
                        "dashboard_id": {"type": "string"},
                    },
                },
                "Error": _ERROR,
            }
        },
    }


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>rtanalytics API</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h2{margin-top:2rem;border-bottom:1px solid #ddd} code,pre{background:#f5f5f5;padding:.1rem .3rem;border-radius:3px}
pre{padding:.6rem;overflow:auto} .m{display:inline-block;min-width:4rem;font-weight:600;text-transform:uppercase}
</style></head><body>
<h1>rtanalytics API</h1>
<p>The machine-readable document is at <a href="/api/v1/openapi.json"><code>/api/v1/openapi.json</code></a>.</p>
<div id="paths">Loading…</div>
<script>
fetch('/api/v1/openapi.json').then(r => r.json()).then(doc => {
  const root = document.getElementById('paths'); root.textContent = '';
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const h = document.createElement('h2');
      h.innerHTML = '<span class="m"></span> <code></code>';
      h.querySelector('.m').textContent = method; h.querySelector('code').textContent = path;
      const p = document.createElement('p'); p.textContent = op.summary || '';
      const pre = document.createElement('pre');
      pre.textContent = JSON.stringify({parameters: op.parameters, requestBody: op.requestBody, responses: op.responses}, null, 2);
      root.append(h, p, pre);
    }
  }
  const s = document.createElement('h2'); s.textContent = 'Schemas';
  const pre = document.createElement('pre'); pre.textContent = JSON.stringify(doc.components.schemas, null, 2);
  root.append(s, pre);
});
</script></body></html>"""


@bp.get("/api/v1/openapi.json")
async def openapi(request: Request) -> HTTPResponse:
    return json_response(document())


@bp.get("/docs")
async def docs(request: Request) -> HTTPResponse:
    return HTTPResponse(_PAGE, content_type="text/html; charset=utf-8")
