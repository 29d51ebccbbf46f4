"""The read and admin HTTP API: one module per resource, each a ``create_blueprint``; ``openapi/`` describes them."""
