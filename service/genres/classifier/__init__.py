"""The classifier: one upload or request in, one outcome event out, paid for once.

``rule`` (claim, classify, record, publish), ``entry`` (its consumer and wiring), ``ledger``
(its SQL), ``consumer`` and ``window`` (the commit-window consumer, outside FastStream: see
``genres.kafka.entry``), ``bounded`` and ``observed`` (the backend as the role uses it)."""
