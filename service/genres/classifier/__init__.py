"""The classifier: one upload or request in, one outcome event out, paid for once.

``rule`` (claim, classify, record, publish), ``entry`` (its consumer and wiring), ``ledger``
(its SQL), ``bounded`` and ``observed`` (the backend as the role uses it)."""
