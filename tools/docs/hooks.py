"""MkDocs hooks (mkdocs.yml ``hooks:``): the pages made from the code, and links to the repository.

- The reference pages (settings, commands, metrics, failure kinds) and the AsyncAPI page are
  written from the code when the site builds (tools/docs/reference.py), never checked in.
- deploy/README.md and contracts/README.md stay where the forge shows them, next to what they
  describe, and appear in the site as pages too (MIRRORED).
- A link to a file of the repository outside docs/ (``../service/genres/config.py``, or
  ``repo:service/genres/config.py``) must name a file that exists, else the build warns (and
  ``--strict`` fails); it points at the forge when ``repo_url`` is set, else it becomes the
  path in code. Links between pages are checked by MkDocs itself (``validation:``).
"""

from __future__ import annotations

import logging
import posixpath
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mkdocs.structure.files import File, Files  # noqa: E402
from tools.docs import reference  # noqa: E402

log = logging.getLogger("mkdocs.plugins.genres")

GENERATED = {
    "reference/settings.md": reference.settings_page,
    "reference/commands.md": reference.commands_page,
    "reference/metrics.md": reference.metrics_page,
    "reference/failures.md": reference.failures_page,
    "integrating/asyncapi.md": reference.asyncapi_page,
}

# Site page -> the repository file it shows.
MIRRORED = {
    "operating/deploy.md": "deploy/README.md",
    "integrating/contracts.md": "contracts/README.md",
}

_LINK = re.compile(r"(!?\[[^\]]*\])\(([^)\s]+)\)")
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)


def on_files(files: Files, config: Any) -> Files:
    for uri, make in GENERATED.items():
        content, problems = make()
        for problem in problems:
            log.warning("%s: %s", uri, problem)
        files.append(File.generated(config, uri, content=content))
    for uri, source in MIRRORED.items():
        files.append(File.generated(config, uri, content=(ROOT / source).read_text("utf-8")))
    return files


def _origin(page_uri: str) -> str:
    """The repository path the page's relative links are relative to."""
    return MIRRORED.get(page_uri, f"docs/{page_uri}")


def _rewrite(target: str, page_uri: str, docs: set[str], repo_url: str) -> str | None:
    """The link's new target; None to drop the link (keep its text)."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target) and not target.startswith("repo:"):
        return target  # http:, https:, mailto:
    if target.startswith("#"):
        return target
    path, _, fragment = target.partition("#")
    if path.startswith("repo:"):
        resolved = posixpath.normpath(path.removeprefix("repo:"))
    else:
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(_origin(page_uri)), path))
    suffix = f"#{fragment}" if fragment else ""
    if resolved.startswith("docs/") or resolved == "docs":
        in_docs = resolved.removeprefix("docs").lstrip("/")
        if in_docs in docs or (ROOT / resolved).is_dir():
            here = posixpath.dirname(page_uri) or "."
            return posixpath.relpath(in_docs or ".", here) + suffix
    mirrored = {source: uri for uri, source in MIRRORED.items()}
    if resolved in mirrored:
        return posixpath.relpath(mirrored[resolved], posixpath.dirname(page_uri) or ".") + suffix
    if not (ROOT / resolved).exists():
        log.warning("%s: link to %s, which is not in the repository", page_uri, target)
        return target
    if repo_url:
        kind = "tree" if (ROOT / resolved).is_dir() else "blob"
        return f"{repo_url.rstrip('/')}/{kind}/main/{resolved}{suffix}"
    return None


def _links(text: str, page_uri: str, docs: set[str], repo_url: str) -> str:
    def one(match: re.Match[str]) -> str:
        label, target = match.group(1), match.group(2)
        new = _rewrite(target, page_uri, docs, repo_url)
        if new is None:
            return label[1:-1] if not label.startswith("!") else label
        return f"{label}({new})"

    return _LINK.sub(one, text)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    docs = {file.src_uri for file in files}
    repo_url = config.get("repo_url") or ""
    out, last = [], 0
    for fence in _FENCE.finditer(markdown):
        out.append(_links(markdown[last : fence.start()], page.file.src_uri, docs, repo_url))
        out.append(fence.group(0))
        last = fence.end()
    out.append(_links(markdown[last:], page.file.src_uri, docs, repo_url))
    return "".join(out)
