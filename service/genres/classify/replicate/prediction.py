"""Replicate's prediction as the classifier reads it: the fields it uses, typed and checked once,
where an answer becomes a prediction; the rest of Replicate's object is ignored.

Replicate's object (``POST /predictions``, ``GET urls.get``)::

    {"id": "…", "status": "starting|processing|succeeded|failed|canceled|aborted",
     "output": null | "https://…/output.json" | [...] | {...}, "error": null | "…",
     "urls": {"get": "…", "cancel": "…", "web": "…"}, "metrics": {"predict_time": 1.9}, …}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FINAL_STATUSES = frozenset({"succeeded", "failed", "canceled", "aborted"})
ENDED_WITHOUT_OUTPUT = frozenset({"failed", "canceled", "aborted"})


@dataclass(frozen=True, slots=True)
class Prediction:
    id: str
    status: str
    """One of Replicate's statuses; an unknown one counts as still running."""
    output: object = None
    """``None`` until present: the output file's URL, a list holding it, or the label map."""
    error: str | None = None
    """Replicate's text when ``failed`` (the model's, which may echo anything)."""
    get_url: str | None = None
    cancel_url: str | None = None
    predict_time: float | None = None
    """Seconds the model ran (``metrics.predict_time``), once Replicate reports it."""

    @classmethod
    def from_json(cls, document: object) -> Prediction | None:
        """The prediction in a decoded answer, or ``None`` if the answer is not one."""
        if not isinstance(document, dict):
            return None
        pid = document.get("id")
        if not isinstance(pid, str) or not pid:
            return None
        status = document.get("status")
        error = document.get("error")
        urls = document.get("urls")
        metrics = document.get("metrics")
        predict_time = metrics.get("predict_time") if isinstance(metrics, dict) else None
        return cls(
            id=pid,
            status=status if isinstance(status, str) else "",
            output=document.get("output"),
            error=None if error is None else str(error),
            get_url=_url(urls, "get"),
            cancel_url=_url(urls, "cancel"),
            predict_time=(
                float(predict_time)
                if isinstance(predict_time, int | float) and not isinstance(predict_time, bool)
                else None
            ),
        )

    @property
    def running(self) -> bool:
        """Still billed: not in a final status (its output may already be there)."""
        return self.status not in FINAL_STATUSES

    @property
    def final(self) -> bool:
        """Nothing more will happen to it (an output may arrive before ``succeeded``)."""
        return not self.running or self.output is not None

    @property
    def has_output(self) -> bool:
        """Its output can be fetched: present (a file output is, while still ``processing``),
        or it succeeded."""
        return self.output is not None or self.status == "succeeded"

    @property
    def ended_without_output(self) -> bool:
        return self.status in ENDED_WITHOUT_OUTPUT

    def url(self, which: Literal["get", "cancel"], base_url: str) -> str:
        """Its ``urls.get`` or ``urls.cancel``, or the API's path for it when absent."""
        url = self.get_url if which == "get" else self.cancel_url
        if url:
            return url
        suffix = "/cancel" if which == "cancel" else ""
        return f"{base_url}/predictions/{self.id}{suffix}"


def _url(urls: object, which: str) -> str | None:
    url = urls.get(which) if isinstance(urls, dict) else None
    return url if isinstance(url, str) and url else None
