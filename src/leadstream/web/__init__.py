"""The worker's HTTP API: module-level views (views.py, webhooks.py, audience.py) over one
ingress service (ingress.py), the route table (routes.py), what the views share (http.py),
the keys file (keys.py) and the OpenAPI document (openapi.py)."""

__all__: list[str] = []
