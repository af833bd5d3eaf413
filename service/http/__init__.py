"""The HTTP front: the ASGI app, the inference route table, bodies, OpenAPI, access log."""
