"""``errands migrate``: open the backend, which creates or upgrades its schema, and say where it stands.

Every backend migrates itself when it opens (idempotently, under a lock), so this command
exists for deploy scripts that want the schema ready before the first worker starts.
"""

from __future__ import annotations

from ..app import Errands
from ..backends import redact_url
from . import _output, app_command

__all__ = ["migrate"]


@app_command(handlers=False, name="migrate")
def migrate(app: Errands) -> None:
    """Create or upgrade the backend's schema, then show its version."""
    backend = app.backend  # opening the backend is what runs the migrations
    version = getattr(backend, "schema_version", None)
    _output.schema_state(
        type(backend).__name__, redact_url(app.settings.url),
        version if isinstance(version, int) else None, app.stats(),
    )
