"""The HTTP API under /api/v1/ (issue 13): ingest for live runs, read endpoints for automation,
its OpenAPI document, scoped per-user tokens, and a client that needs no Django
(``audit.api.client``)."""
