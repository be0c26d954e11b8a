"""The responder: recommended tags for a track, over the bus.

``rule`` (which tags), ``entry`` (its subscriber, on-demand requests, waiting), ``tracks``
(its SQL)."""
