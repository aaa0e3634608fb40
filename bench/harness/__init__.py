"""The bench harness: servers, the shared side effect, the timed phases and the report."""
