"""Integrations with web frameworks, each importing its framework only when used:
``errands.contrib.starlette`` (Starlette and FastAPI) and ``errands.contrib.flask``; and tracing:
``errands.contrib.opentelemetry``."""
