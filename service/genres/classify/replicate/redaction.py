"""Keeping the Replicate token out of every message: errors, logs and dead letters quote server
texts and URLs, and a server (or a misconfigured base URL) may echo the token back."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Redactor:
    token: str

    def scrub(self, text: str) -> str:
        return text.replace(self.token, "[redacted]") if self.token else text

    def url(self, url: str) -> str:
        """The URL without its query (signed storage URLs carry secrets there) and the token."""
        return self.scrub(url.split("?", 1)[0])
