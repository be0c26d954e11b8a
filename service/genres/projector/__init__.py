"""The projector: outcome events into ``tracks.extra``.

``rule`` (the stale guard and auto-tag), ``entry`` (its subscriber), ``store`` (its SQL)."""
