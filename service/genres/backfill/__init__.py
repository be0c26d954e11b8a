"""Backfill: classification requests for the tracks that lack current predictions.

``rule`` (selection and sending), ``entry`` (publishing and waiting), ``store`` (its SQL),
``outcomes`` (the outcome listener of ``--wait``), ``command`` (its output for people)."""
