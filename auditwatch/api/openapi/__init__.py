"""The OpenAPI document: ``document.py`` serves it, one module of paths per resource."""
