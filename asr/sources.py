"""Where downloadable files come from: the `resources.json` catalogue and the address forms we accept.

`load_manifest()` reads `resources.json` beside this file: the LibriSpeech
archives of openslr resource 12 (splits, aliases, mirrors, SHA-256 sums) and the
named resources `download_weights.py` offers (the LMs of openslr resource 11),
each with the source of its checksum. `resolve_url()` turns what a user may
paste for a checkpoint (a plain http(s) URL, a Hugging Face `owner/repo/file` or
`hf://` address, a Google Drive share link) into a direct download address;
`auth_headers()` adds HF_TOKEN for gated Hugging Face repositories, and
`drive_confirm_url()` finds the real file behind Google Drive's "can't scan for
viruses" page, which `asr.download` follows when Drive sends it.
"""

import functools
import html
import html.parser
import json
import os
import re
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode, urljoin, urlsplit

MANIFEST_PATH = Path(__file__).with_name("resources.json")
_DRIVE_HOSTS = {"drive.google.com", "docs.google.com", "drive.usercontent.google.com"}


@functools.lru_cache(maxsize=1)
def load_manifest() -> dict:
    """The parsed `resources.json`: LibriSpeech splits and named downloadable resources."""
    with open(MANIFEST_PATH, encoding="utf-8") as f:
        return json.load(f)


def resolve_url(spec: str) -> str:
    """A download address from a URL, a Google Drive share link, or a Hugging Face `owner/repo/path`.

    Drive links (`https://drive.google.com/file/d/<id>/view?...`, `.../open?id=<id>`) become the
    direct `https://drive.google.com/uc?export=download&id=<id>`. `owner/repo/path/to/file`
    (optionally `hf://`, `owner/repo@revision/...`) becomes `https://huggingface.co/owner/repo/resolve/<revision
    or main>/path/to/file`.
    """
    spec = spec.strip()
    parts = urlsplit(spec)
    if parts.scheme in ("http", "https"):
        if is_google_drive(spec):
            file_id = _drive_file_id(spec)
            if file_id is None:
                raise ValueError(f"{spec}: a Google Drive address without a file id; use the file's share link")
            return f"https://drive.google.com/uc?export=download&id={file_id}"
        return spec
    if parts.scheme not in ("", "hf"):
        raise ValueError(f"{spec}: unsupported address; use http(s)://..., a Google Drive link or owner/repo/file")
    path = spec[len("hf://") :] if parts.scheme == "hf" else spec
    m = re.fullmatch(r"([\w.-]+)/([\w.-]+?)(?:@([\w./-]+?))?/(.+)", path)
    if not m or ".." in m.group(4).split("/"):
        raise ValueError(
            f"{spec!r} is neither an http(s) URL nor a Hugging Face 'owner/repo/path/to/file' "
            "(e.g. 'facebook/wav2vec2-base-960h/pytorch_model.bin')"
        )
    owner, repo, revision, file = m.groups()
    return f"https://huggingface.co/{owner}/{repo}/resolve/{quote(revision or 'main', safe='')}/{quote(file)}"


def auth_headers(url: str) -> dict[str, str]:
    """A Hugging Face token from HF_TOKEN for huggingface.co, for gated repositories; {} for other hosts.

    Sent per request, so requests drops it when a redirect leaves the host (to a CDN).
    """
    host = urlsplit(url).hostname or ""
    token = os.environ.get("HF_TOKEN")
    if token and (host == "huggingface.co" or host.endswith(".huggingface.co")):
        return {"Authorization": f"Bearer {token}"}
    return {}


def is_google_drive(url: str) -> bool:
    """True when `url` is served by Google Drive (which may answer with a warning page instead of the file)."""
    return (urlsplit(url).hostname or "") in _DRIVE_HOSTS


def _drive_file_id(url: str) -> str | None:
    m = re.search(r"/(?:file/)?d/([\w-]{10,})", urlsplit(url).path)
    if m:
        return m.group(1)
    ids = parse_qs(urlsplit(url).query).get("id")
    return ids[0] if ids else None


class _FormParser(html.parser.HTMLParser):
    """Collects each <form>'s action and its hidden inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[dict[str, str], dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append((a, {}))
        elif tag == "input" and self.forms and a.get("type", "").lower() == "hidden" and a.get("name"):
            self.forms[-1][1][a["name"]] = a.get("value", "")


def drive_confirm_url(page: str, page_url: str) -> str | None:
    """The real download address behind Google Drive's "can't scan for viruses" page, or None.

    The current page holds `<form id="download-form" action=...>` with hidden id/export/confirm/uuid
    inputs; older pages linked to `/uc?export=download&confirm=<token>&id=<id>`.
    """
    parser = _FormParser()
    parser.feed(page)
    for attrs, fields in parser.forms:
        if attrs.get("id") == "download-form" or "confirm" in fields:
            action = urljoin(page_url, attrs.get("action") or page_url)
            return f"{action.split('?')[0]}?{urlencode(fields)}"
    m = re.search(r'href="(/uc\?export=download[^"]*confirm=[^"]+)"', page)
    if m:
        return urljoin(page_url, html.unescape(m.group(1)))
    return None
