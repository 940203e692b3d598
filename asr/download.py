"""Resumable, checksum-verified downloads, safe archive extraction, and LibriSpeech on demand.

`download_file()` streams a URL into `<dest>.part`, resumes an interrupted transfer
with an HTTP Range request, retries connection errors and 5xx answers with
exponential backoff, checks the free disk space first, and renames the part
file to `dest` only after its size and SHA-256 match; a file that fails
verification is deleted, never left under the final name. A 404/403 or an HTML
page where a file was expected (a login wall, a Google Drive warning page) is
a clear error instead of a corrupt "archive". Several URLs are mirrors, tried
in order.

`extract_archive()` unpacks a .tar(.gz/.bz2/.xz) or .zip into a temporary
folder beside the target, refusing absolute paths, `..` components, links that
point outside and device files, then moves the result into place with one
rename and writes a completion marker last. An interrupted extraction is
therefore redone, and a finished one makes a second call return at once.

`ensure_librispeech()` combines the two for the LibriSpeech splits of openslr
resource 12, whose SHA-256 sums and mirrors live in `resources.json` beside
this file. `LIBRISPEECH_BASE_URL` points it at another server (a local mirror,
or the loopback server of the tests); a `SHA256SUMS` file published there
replaces the built-in sums for that server.
"""

import contextlib
import errno
import functools
import hashlib
import html.parser
import json
import os
import re
import shutil
import stat
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs, quote, urlencode, urljoin, urlsplit

import requests
import urllib3
from tqdm import tqdm

MANIFEST_PATH = Path(__file__).with_name("resources.json")
CHUNK_SIZE = 1 << 20  # bytes per read and write
TIMEOUT = (30.0, 120.0)  # seconds: to connect, and of silence between received bytes
RETRIES = 6  # consecutive failed attempts (without new bytes) before giving up on a URL
BACKOFF = 2.0  # seconds before the first retry; doubles with each further retry
LIBRISPEECH_SPACE_FACTOR = 2.1  # archive + extracted tree (FLAC does not compress further) + slack
MARKER = ".complete"  # written into an extracted folder as the very last step
BASE_URL_ENV = "LIBRISPEECH_BASE_URL"
USER_AGENT = "deepspeech2-asr/download.py (+python-requests)"
_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}  # worth asking again: overload, gateway trouble
_DRIVE_HOSTS = {"drive.google.com", "docs.google.com", "drive.usercontent.google.com"}
# The stdlib's own member check (Python >= 3.10.12 / 3.11.4), on top of ours: also drops setuid bits.
_TAR_FILTER = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


class DownloadError(RuntimeError):
    """A file could not be fetched; the message names the URL and what to do."""


class ChecksumError(DownloadError):
    """A fetched (or existing) file has the wrong size or SHA-256; it is not kept under its final name."""


class HtmlResponseError(DownloadError):
    """The server answered with an HTML page where a file was expected."""


class DiskSpaceError(DownloadError):
    """Not enough free disk space for the download or extraction."""


class UnsafeArchiveError(ValueError):
    """An archive member would land outside the target folder, or is a device file."""


class _Transient(Exception):
    """An attempt failed in a way that another attempt may fix (dropped connection, 5xx)."""


class _FollowPage(Exception):
    """The server sent an interstitial page whose form leads to the file (Google Drive)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


# ---------------------------------------------------------------------------------------------
# manifest


@functools.lru_cache(maxsize=1)
def load_manifest() -> dict:
    """The parsed `resources.json`: LibriSpeech splits and named downloadable resources."""
    with open(MANIFEST_PATH, encoding="utf-8") as f:
        return json.load(f)


LIBRISPEECH_SPLITS: tuple[str, ...] = tuple(load_manifest()["librispeech"]["splits"])
LIBRISPEECH_ALIASES: dict[str, list[str]] = dict(load_manifest()["librispeech"]["aliases"])
LIBRISPEECH_MIRRORS: tuple[str, ...] = tuple(load_manifest()["librispeech"]["mirrors"])


# ---------------------------------------------------------------------------------------------
# downloading


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in CHUNK_SIZE blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK_SIZE):
            digest.update(block)
    return digest.hexdigest()


def download_file(
    urls: str | Sequence[str],
    dest: str | Path,
    *,
    sha256: str | None = None,
    size: int | None = None,
    retries: int = RETRIES,
    backoff: float = BACKOFF,
    space_factor: float = 1.0,
    progress: bool = True,
    session: requests.Session | None = None,
) -> Path:
    """Fetch `dest` from the first of `urls` (mirrors) that works; return `dest`.

    sha256/size: what the file must match; without them the file is only checked
    against the server's Content-Length. An existing `dest` is verified and kept.
    space_factor: free space required, as a multiple of the file size (2 when the
    file will be extracted beside itself). backoff: seconds before the first retry
    (0 in tests). Raises DownloadError (or a subclass) naming every URL tried.
    """
    dest = Path(dest)
    urls = [urls] if isinstance(urls, str) else list(urls)
    if not urls:
        raise ValueError(f"no URL given for {dest}")
    sha256 = sha256.lower() if sha256 else None
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _lock(dest.parent / f".{dest.name}.lock"), _session_or(session) as s:
        if dest.exists():
            _verify(
                dest, sha256=sha256, size=size, origin=f"existing file {dest}", remedy=f"delete {dest} and run again"
            )
            return dest
        part = dest.with_name(dest.name + ".part")
        errors: list[DownloadError] = []
        for url in urls:
            try:
                digest, nbytes = _fetch(s, url, part, size, retries, backoff, space_factor, progress)
                _verify(
                    part,
                    sha256=sha256,
                    size=size,
                    actual_sha256=digest,
                    origin=f"{url} (downloaded to {part})",
                    remedy="the partial file was deleted; run again, and if the mismatch repeats the file at that "
                    "address differs from the one the checksum was recorded for",
                )
                os.replace(part, dest)  # atomic: dest appears only once verified
                return dest
            except ChecksumError as e:
                part.unlink(missing_ok=True)  # never resume onto bytes that failed verification
                errors.append(e)
            except DiskSpaceError:
                raise  # another mirror will not make more room
            except DownloadError as e:
                errors.append(e)
            if len(urls) > 1 and url != urls[-1]:
                print(f"{errors[-1]}\n  -> trying the next mirror", file=sys.stderr, flush=True)
        if len(errors) == 1:
            raise errors[0]
        summary = "\n".join(f"  {u}: {e}" for u, e in zip(urls, errors, strict=True))
        raise type(errors[-1])(f"could not download {dest.name} from any of {len(urls)} addresses:\n{summary}")


def _fetch(
    session: requests.Session,
    url: str,
    part: Path,
    expected_size: int | None,
    retries: int,
    backoff: float,
    space_factor: float,
    progress: bool,
) -> tuple[str, int]:
    """Fill `part` with the body at `url`, resuming and retrying; return (sha256 hex, bytes)."""
    hasher = _PartHasher(part)
    failures = 0
    pages_followed = 0
    while True:
        before = part.stat().st_size if part.exists() else 0
        try:
            _attempt(session, url, part, hasher, expected_size, space_factor, progress)
            return hasher.hexdigest(), hasher.count
        except _FollowPage as page:
            pages_followed += 1
            if pages_followed > 2:
                raise HtmlResponseError(f"{url}: Google Drive keeps answering with a warning page") from None
            url = page.url
            continue
        except _Transient as e:
            after = part.stat().st_size if part.exists() else 0
            failures = 1 if after > before else failures + 1  # a flaky link that makes progress may go on
            if failures > retries:
                raise DownloadError(f"{url}: giving up after {retries} retries: {e}") from None
            delay = backoff * 2 ** (failures - 1)
            print(
                f"{url}: {e}; retry {failures}/{retries} in {delay:.0f} s, resuming at byte {after:,}",
                file=sys.stderr,
                flush=True,
            )
            time.sleep(delay)


def _attempt(
    session: requests.Session,
    url: str,
    part: Path,
    hasher: "_PartHasher",
    expected_size: int | None,
    space_factor: float,
    progress: bool,
) -> None:
    """One HTTP request: append the rest of the body to `part`; raise _Transient to be retried."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Accept-Encoding": "identity", **_auth_headers(url)}  # bytes exactly as stored on the server
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        r = session.get(url, headers=headers, stream=True, timeout=TIMEOUT)
    except (requests.ConnectionError, requests.Timeout) as e:
        raise _Transient(f"connection failed ({_short(e)})") from None
    except requests.RequestException as e:
        raise DownloadError(f"{url}: {_short(e)}") from None
    with r:
        status = r.status_code
        if status in _RETRY_STATUS:
            raise _Transient(f"HTTP {status} {r.reason}")
        if status == 416 and offset:  # nothing left after `offset`: complete, or the part is bogus
            if _content_range_total(r.headers.get("Content-Range")) == offset:
                hasher.sync()
                return
            _restart(part, hasher)
            raise _Transient("the server refused to resume from the partial file; starting over")
        if status in (401, 403):
            raise DownloadError(
                f"{url}: HTTP {status} {r.reason}: access denied. The file is private or needs a login "
                "(for a gated Hugging Face repository accept its terms and set HF_TOKEN); check the address"
            )
        if status in (404, 410):
            raise DownloadError(f"{url}: HTTP {status} {r.reason}: there is no file at this address; check the URL")
        if status not in (200, 206):
            raise DownloadError(f"{url}: unexpected HTTP {status} {r.reason}")

        if status == 206:
            start, total = _content_range(r.headers.get("Content-Range"))
            if start != offset:
                _restart(part, hasher)
                raise _Transient(f"the server resumed at byte {start}, not {offset}; starting over")
        else:  # a full body: we sent no Range, or the server ignores it
            if offset:
                print(f"{url}: the server cannot resume; downloading from the start", file=sys.stderr, flush=True)
                _restart(part, hasher)
                offset = 0
            length = r.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None

        if "text/html" in r.headers.get("Content-Type", "").lower():
            _reject_html(url, r, part if offset == 0 else None)
        if expected_size is not None and total is not None and total != expected_size:
            raise ChecksumError(
                f"{url}: the server offers {total:,} bytes but {expected_size:,} were expected; "
                "the file at that address has changed, so it is not downloaded"
            )
        if total is not None:
            _check_space(part.parent, need=(total - offset) + (space_factor - 1.0) * total)

        hasher.sync()
        received = offset
        bar = tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=part.name[:-5],
            disable=not progress, leave=False,
        )  # fmt: skip
        stream = r.raw.stream(CHUNK_SIZE, decode_content=False)
        with bar, open(part, "ab") as f:
            while True:
                try:
                    chunk = next(stream, None)
                except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as e:
                    raise _Transient(f"connection dropped after {received:,} bytes ({_short(e)})") from None
                if chunk is None:
                    break
                if received == 0 and _looks_like_html(chunk):
                    f.close()
                    part.unlink(missing_ok=True)
                    raise HtmlResponseError(_html_message(url, chunk.decode("utf-8", "replace")))
                _write(f, chunk, part)
                hasher.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        if total is not None and received != total:
            raise _Transient(f"connection closed after {received:,} of {total:,} bytes")


class _PartHasher:
    """SHA-256 of a .part file that grows across attempts; rehashes from disk when out of step."""

    def __init__(self, part: Path) -> None:
        self.part = part
        self.reset()

    def reset(self) -> None:
        self.digest = hashlib.sha256()
        self.count = 0

    def sync(self) -> None:
        """Make the hash cover exactly the bytes now in the part file (after a resume by another process)."""
        size = self.part.stat().st_size if self.part.exists() else 0
        if size != self.count:
            self.reset()
            if size:
                with open(self.part, "rb") as f:
                    while block := f.read(CHUNK_SIZE):
                        self.update(block)

    def update(self, chunk: bytes) -> None:
        self.digest.update(chunk)
        self.count += len(chunk)

    def hexdigest(self) -> str:
        return self.digest.hexdigest()


def _restart(part: Path, hasher: _PartHasher) -> None:
    part.unlink(missing_ok=True)
    hasher.reset()


def _write(f, chunk: bytes, part: Path) -> None:
    try:
        f.write(chunk)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise DiskSpaceError(
                f"{part}: the disk filled up; free some space and run again (the download resumes)"
            ) from None
        raise


def _verify(
    path: Path,
    *,
    sha256: str | None,
    size: int | None,
    origin: str,
    remedy: str,
    actual_sha256: str | None = None,
) -> None:
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise ChecksumError(f"{origin}: {actual_size:,} bytes, expected {size:,}; {remedy}")
    if sha256:
        actual = actual_sha256 or file_sha256(path)
        if actual != sha256:
            raise ChecksumError(f"{origin}: SHA-256 is {actual}, expected {sha256}; {remedy}")


def _check_space(folder: Path, need: float) -> None:
    free = shutil.disk_usage(folder).free
    if need > free:
        raise DiskSpaceError(
            f"{folder}: {need / 1e9:.2f} GB of free space needed, only {free / 1e9:.2f} GB available; "
            "free some space or choose another folder (--data_dir / --out)"
        )


def _content_range(value: str | None) -> tuple[int, int | None]:
    """'bytes 100-199/1000' -> (100, 1000); total None when the server writes '*'."""
    m = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value or "")
    if not m:
        raise _Transient(f"a partial answer without a valid Content-Range ({value!r})")
    return int(m.group(1)), None if m.group(3) == "*" else int(m.group(3))


def _content_range_total(value: str | None) -> int | None:
    m = re.fullmatch(r"\s*bytes\s+\*/(\d+)\s*", value or "")
    return int(m.group(1)) if m else None


def _looks_like_html(chunk: bytes) -> bool:
    head = chunk[:256].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html"))


def _reject_html(url: str, r: requests.Response, part: Path | None) -> None:
    """Raise for an HTML answer; for a Google Drive warning page, raise _FollowPage to its download link."""
    text = r.raw.read(1 << 20, decode_content=True).decode(r.encoding or "utf-8", "replace")
    if part is not None:
        part.unlink(missing_ok=True)
    if _is_google_drive(r.url or url):
        target = drive_confirm_url(text, r.url or url)
        if target:
            raise _FollowPage(target)
        raise HtmlResponseError(
            f"{url}: Google Drive sent a web page instead of the file (the file is not shared with 'anyone "
            "with the link', its download quota is exhausted, or the warning page changed). Open the link in "
            "a browser, download the file, and pass it as a local path"
        )
    raise HtmlResponseError(_html_message(url, text))


def _html_message(url: str, text: str) -> str:
    title = re.search(r"<title[^>]*>(.*?)</title>", text, re.I | re.S)
    shown = f" titled {' '.join(title.group(1).split())[:80]!r}" if title else ""
    return (
        f"{url}: the server sent an HTML page{shown} where a file was expected (a login or error page, "
        "or a wrong link); open the address in a browser to see what it serves"
    )


def _short(e: BaseException) -> str:
    return " ".join(str(e).split())[:200] or type(e).__name__


def _auth_headers(url: str) -> dict[str, str]:
    """A Hugging Face token from HF_TOKEN for huggingface.co (requests drops it on cross-host redirects)."""
    host = urlsplit(url).hostname or ""
    token = os.environ.get("HF_TOKEN")
    if token and (host == "huggingface.co" or host.endswith(".huggingface.co")):
        return {"Authorization": f"Bearer {token}"}
    return {}


@contextlib.contextmanager
def _session_or(session: requests.Session | None) -> Iterator[requests.Session]:
    if session is not None:
        yield session
        return
    with requests.Session() as s:
        s.headers["User-Agent"] = USER_AGENT
        yield s


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (POSIX flock), so parallel processes do not write the same file."""
    try:
        import fcntl
    except ImportError:  # Windows: no locking; run one process at a time
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------------------
# where a file is: plain URLs, Hugging Face, Google Drive


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
        if _is_google_drive(spec):
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


def _is_google_drive(url: str) -> bool:
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


# ---------------------------------------------------------------------------------------------
# extraction


def extract_archive(archive: str | Path, dest: str | Path, *, subdir: str | None = None, progress: bool = True) -> Path:
    """Safely unpack a .tar(.gz/.bz2/.xz) or .zip so that `dest` holds its contents (or its `subdir`).

    Members are checked one by one while streaming into a temporary folder beside
    `dest`; an absolute path, a `..` component, a link pointing outside, or a device
    file aborts the whole extraction and nothing reaches `dest`. The finished tree
    is renamed into place and `dest/.complete` is written last. Calling again after
    that returns immediately; a run interrupted before the marker is redone.
    """
    archive, dest = Path(archive), Path(dest)
    marker = dest / MARKER
    if marker.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    stamp = dest.parent / f".{dest.name}.extracting"  # exists only while dest may be half in place
    with _lock(dest.parent / f".{dest.name}.lock"):
        if marker.exists():  # another process finished while we waited for the lock
            return dest
        for stale in dest.parent.glob(f".{dest.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if stamp.exists():  # interrupted between moving the tree into place and writing the marker
            shutil.rmtree(dest, ignore_errors=True)
            stamp.unlink()
        if dest.exists():
            raise FileExistsError(
                f"{dest} exists but has no {MARKER} marker, so it was not extracted here by this tool; "
                "move it away (or delete it) and run again"
            )
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
        try:
            count = _unpack(archive, tmp, progress)
            src = tmp / subdir if subdir else tmp
            if not src.is_dir():
                raise ValueError(f"{archive} has no folder {subdir}/ inside; is it the right archive?")
            stamp.touch()
            os.replace(src, dest)  # one rename: dest appears complete or not at all
            _write_atomic(marker, json.dumps({"archive": archive.name, "members": count}) + "\n")
            stamp.unlink()
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise DiskSpaceError(f"{dest.parent}: the disk filled up while extracting {archive}") from None
            raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _unpack(archive: Path, root: Path, progress: bool) -> int:
    """Extract every member of `archive` into `root` after checking it; return the member count."""
    if not archive.is_file():
        raise FileNotFoundError(f"{archive}: archive not found")
    bar = tqdm(desc=f"extracting {archive.name}", unit=" files", disable=not progress, leave=False)
    with bar:
        if zipfile.is_zipfile(archive):
            return _unpack_zip(archive, root, bar)
        try:
            tar = tarfile.open(archive, "r|*")  # stream: one pass over a multi-GB .tar.gz
        except tarfile.TarError as e:
            raise ValueError(f"{archive}: neither a zip nor a tar archive ({e})") from None
        count = 0
        with tar:
            for member in tar:
                _check_tar_member(archive, member, root)
                tar.extract(member, root, **_TAR_FILTER)
                count += 1
                bar.update()
        return count


def _check_tar_member(archive: Path, member: tarfile.TarInfo, root: Path) -> None:
    _check_member_path(archive, member.name, root)
    if member.ischr() or member.isblk() or member.isfifo():
        raise UnsafeArchiveError(f"{archive}: member {member.name!r} is a device file or pipe; refusing to extract")
    if member.issym():
        _check_link(archive, member.name, (root / member.name).parent / member.linkname, member.linkname, root)
    elif member.islnk():
        _check_link(archive, member.name, root / member.linkname, member.linkname, root)
    elif not (member.isreg() or member.isdir()):
        raise UnsafeArchiveError(f"{archive}: member {member.name!r} has unsupported type {member.type!r}")


def _unpack_zip(archive: Path, root: Path, bar: tqdm) -> int:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:
            _check_member_path(archive, info.filename, root)
            mode = info.external_attr >> 16
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
                raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is a device file; refusing to extract")
            if stat.S_ISLNK(mode):
                target = zf.read(info).decode("utf-8")
                link = root / info.filename
                _check_link(archive, info.filename, link.parent / target, target, root)
                link.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(target, link)
            else:
                zf.extract(info, root)
            bar.update()
        return len(infos)


def _check_member_path(archive: Path, name: str, root: Path) -> None:
    posix = name.replace("\\", "/")
    if not posix or posix.startswith("/") or re.match(r"[A-Za-z]:", posix):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path; refusing to extract")
    if ".." in PurePosixPath(posix).parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} contains '..'; refusing to extract")
    if not _inside(root / posix, root):  # written through a link extracted earlier
        raise UnsafeArchiveError(f"{archive}: member {name!r} would be written outside the target; refusing")


def _check_link(archive: Path, name: str, target: Path, linkname: str, root: Path) -> None:
    if linkname.startswith("/") or not _inside(target, root):
        raise UnsafeArchiveError(
            f"{archive}: link {name!r} -> {linkname!r} points outside the target folder; refusing to extract"
        )


def _inside(path: Path, root: Path) -> bool:
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(root))


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# LibriSpeech


def expand_librispeech(name: str) -> list[str]:
    """A split name -> [split]; an alias such as 'train-960' -> its splits."""
    if name in LIBRISPEECH_ALIASES:
        return list(LIBRISPEECH_ALIASES[name])
    if name in LIBRISPEECH_SPLITS:
        return [name]
    known = ", ".join([*LIBRISPEECH_SPLITS, *LIBRISPEECH_ALIASES])
    raise ValueError(f"{name!r} is not a LibriSpeech split; choose from {known}")


def librispeech_base_url(base_url: str | None = None) -> str | None:
    """The overriding server for LibriSpeech archives: the argument, else $LIBRISPEECH_BASE_URL, else None."""
    base = base_url or os.environ.get(BASE_URL_ENV) or None
    return base.rstrip("/") if base else None


def ensure_librispeech(
    split: str,
    data_dir: str | Path,
    *,
    base_url: str | None = None,
    download: bool = True,
    keep_archive: bool = False,
    retries: int = RETRIES,
    backoff: float = BACKOFF,
    progress: bool = True,
) -> Path:
    """Return `<data_dir>/LibriSpeech/<split>`, downloading, verifying and extracting it if missing.

    A split with its completion marker returns at once, without network traffic. A
    split folder without the marker that this tool did not start (for instance one
    unpacked by hand) is used as it is. The archive goes to `<data_dir>/downloads/`
    and is deleted after extraction unless keep_archive. download=False turns a
    missing split into FileNotFoundError. base_url (else $LIBRISPEECH_BASE_URL)
    replaces the openslr mirrors; its SHA256SUMS, when published, replaces the
    built-in sums.
    """
    if split not in LIBRISPEECH_SPLITS:
        raise ValueError(
            f"{split!r} is not a single LibriSpeech split; choose from {', '.join(LIBRISPEECH_SPLITS)} "
            "(expand aliases such as train-960 with expand_librispeech first)"
        )
    data_dir = Path(data_dir)
    split_dir = data_dir / "LibriSpeech" / split
    if (split_dir / MARKER).exists():
        return split_dir
    if split_dir.is_dir() and not (split_dir.parent / f".{split}.extracting").exists():
        print(f"LibriSpeech {split}: using {split_dir} as it is (not extracted by this tool)", flush=True)
        return split_dir
    if not download:
        raise FileNotFoundError(
            f"LibriSpeech {split} is not at {split_dir}; drop --no_download to fetch it from openslr, "
            "or point --data_dir at the folder that holds LibriSpeech/"
        )

    name = f"{split}.tar.gz"
    base = librispeech_base_url(base_url)
    sha256 = load_manifest()["librispeech"]["splits"][split]["sha256"]
    with requests.Session() as session:
        session.headers["User-Agent"] = USER_AGENT
        if base:
            urls = [f"{base}/{name}"]
            published = fetch_sha256sums(f"{base}/SHA256SUMS", session=session, retries=retries, backoff=backoff)
            if published is None:
                print(f"LibriSpeech {split}: {base} publishes no SHA256SUMS; checking the openslr SHA-256", flush=True)
            else:
                if name not in published:
                    raise DownloadError(f"{base}/SHA256SUMS has no line for {name}; add one (sha256sum {name})")
                sha256 = published[name]
        else:
            urls = [f"{mirror}/{name}" for mirror in LIBRISPEECH_MIRRORS]
        archive = data_dir / "downloads" / name
        print(f"LibriSpeech {split}: fetching {urls[0]} -> {archive}", flush=True)
        download_file(
            urls,
            archive,
            sha256=sha256,
            retries=retries,
            backoff=backoff,
            space_factor=LIBRISPEECH_SPACE_FACTOR,
            progress=progress,
            session=session,
        )
    print(f"LibriSpeech {split}: checksum verified; extracting into {split_dir}", flush=True)
    extract_archive(archive, split_dir, subdir=f"LibriSpeech/{split}", progress=progress)
    if not keep_archive:
        archive.unlink(missing_ok=True)
    return split_dir


def fetch_sha256sums(
    url: str, *, session: requests.Session | None = None, retries: int = RETRIES, backoff: float = BACKOFF
) -> dict[str, str] | None:
    """Parse a `sha256sum`-format file at `url` into {file name: hex}; None when the server has none (403/404)."""
    failures = 0
    with _session_or(session) as s:
        while True:
            try:
                r = s.get(url, timeout=TIMEOUT, headers=_auth_headers(url))
                if r.status_code not in _RETRY_STATUS:
                    break
                reason = f"HTTP {r.status_code}"
            except (requests.ConnectionError, requests.Timeout) as e:
                reason = _short(e)
            failures += 1
            if failures > retries:
                raise DownloadError(f"{url}: giving up after {retries} retries: {reason}")
            time.sleep(backoff * 2 ** (failures - 1))
    if r.status_code in (403, 404, 410):  # 403: how S3-style buckets answer for a missing key
        return None
    if r.status_code != 200:
        raise DownloadError(f"{url}: HTTP {r.status_code} {r.reason}")
    if "text/html" in r.headers.get("Content-Type", "").lower() or _looks_like_html(r.content):
        raise HtmlResponseError(_html_message(url, r.text))
    sums = {}
    for number, line in enumerate(r.text.splitlines(), 1):
        if not line.strip():
            continue
        m = re.fullmatch(r"([0-9a-fA-F]{64}) [ *](.+)", line.strip())
        if not m:
            raise DownloadError(f"{url}: line {number} is not '<sha256>  <file name>': {line[:100]!r}")
        sums[PurePosixPath(m.group(2)).name] = m.group(1).lower()
    return sums
