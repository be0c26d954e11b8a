"""The Replicate adapter: ``mtg/effnet-discogs`` over Replicate's HTTP API.

Split by concern: ``adapter`` (one classification: create or resume, poll, fetch the output,
cancel), ``retries`` (stamina inside the deadline), ``transport`` (HTTP calls, where the token
may go), ``prediction`` (Replicate's prediction, typed: the fields read and its statuses),
``protocol`` (error mapping, validation of answers), ``redaction``.
"""

from genres.classify.replicate.adapter import CreationLimiter, ReplicateClassifier
from genres.classify.replicate.retries import Backoff

__all__ = ["Backoff", "CreationLimiter", "ReplicateClassifier"]
