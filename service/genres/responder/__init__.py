"""The responder: recommended tags for a track, over the bus.

``rule`` (which tags, on-demand requests), ``entry`` (its subscriber), ``runtime`` (the
request tasks and the reply path), ``outcomes`` and ``watch`` (the outcome listener and a
request's wait on it), ``tracks`` (its SQL)."""
