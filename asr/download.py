"""Resumable, checksum-verified HTTP downloads.

`download_file()` streams a URL into `<dest>.part`, resumes an interrupted transfer
with an HTTP Range request, retries connection errors and 5xx answers with
exponential backoff, checks the free disk space first, and renames the part
file to `dest` only after its size and SHA-256 match; a file that fails
verification is deleted, never left under the final name. A 404/403 or an HTML
page where a file was expected (a login wall) is a clear error instead of a
corrupt "archive"; Google Drive's virus-scan warning page is followed to the
file. Several URLs are mirrors, tried in order. `fetch_text()` gets a small
text file (a checksum list) with the same retries, and `file_lock()` keeps
parallel processes from writing the same file.

A transfer that stalls is cut off: "stalled" means fewer than STALL_BYTES
(1 KiB) arrived within `timeout` seconds (60 by default), so a server that
drips a byte every few seconds is treated like a silent one; the bytes received
stay in the .part file and the next attempt (or the next run) resumes there.
Names that come from the network (a URL's last segment) become file names only
through `safe_file_name()`, and `destination()` checks that the resolved path
stays inside the folder it is meant for.
"""

import contextlib
import errno
import hashlib
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import requests
import urllib3
from tqdm import tqdm

from asr.errors import ASRError
from asr.sources import auth_headers, drive_confirm_url, is_google_drive

CHUNK_SIZE = 1 << 20  # bytes per read and write
TIMEOUT = (30.0, 120.0)  # seconds: to connect, and of silence between received bytes (small text files)
STALL_TIMEOUT = 60.0  # seconds within which at least STALL_BYTES must arrive, or the transfer counts as stalled
STALL_BYTES = 1024  # bytes: less than this within STALL_TIMEOUT is a stall (a server dripping a byte at a time)
RETRIES = 6  # consecutive failed attempts (without new bytes) before giving up on a URL
MAX_NAME_BYTES = 255  # the longest file name most file systems take
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
BACKOFF = 2.0  # seconds before the first retry; doubles with each further retry
USER_AGENT = "deepspeech2-asr/download.py (+python-requests)"
MAX_TEXT_BYTES = 16 * 2**20  # fetch_text's limit: a checksum list is a few KB
_SNIFF_BYTES = 256  # the first bytes of a body looked at for an HTML page
_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}  # worth asking again: overload, gateway trouble


class DownloadError(ASRError, RuntimeError):
    """A file could not be fetched; the message names the URL and what to do."""


class UnsafeNameError(DownloadError):
    """A file name taken from a URL or a flag is not one plain path component, or would land outside its folder."""


class ChecksumError(DownloadError):
    """A fetched (or existing) file has the wrong size or SHA-256; it is not kept under its final name."""


class HtmlResponseError(DownloadError):
    """The server answered with an HTML page where a file was expected."""


class DiskSpaceError(DownloadError):
    """Not enough free disk space for the download or extraction."""


class _Transient(Exception):
    """An attempt failed in a way that another attempt may fix (dropped connection, 5xx)."""


class _Stalled(_Transient):
    """Fewer than STALL_BYTES arrived within the stall timeout."""


class _FollowPage(Exception):
    """The server sent an interstitial page whose form leads to the file (Google Drive)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in CHUNK_SIZE blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK_SIZE):
            digest.update(block)
    return digest.hexdigest()


def safe_file_name(
    name: str, *, origin: str, remedy: str = "pass --name with a plain file name such as model.pt"
) -> str:
    """Return `name` if it is one plain path component, else raise UnsafeNameError naming `origin`.

    Plain: not empty, no separator ('/' or backslash), no leading dot (so no '.', '..' or hidden file), no
    leading dash (it would read as an option), no control character (NUL included), at most 255 bytes in UTF-8.
    Apply it after URL-decoding: '%2F' is a separator too.
    """
    if not name:
        problem = "is empty"
    elif "/" in name or "\\" in name:
        problem = "contains a path separator ('/' or '\\'), so it could land outside the download folder"
    elif name.startswith("."):
        problem = "starts with a dot ('.', '..' or a hidden file)"
    elif name.startswith("-"):
        problem = "starts with a dash (it would read as a command-line option)"
    elif _CONTROL.search(name):
        problem = "contains a control character"
    elif len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        problem = f"is longer than the {MAX_NAME_BYTES} bytes a file name may have"
    else:
        return name
    raise UnsafeNameError(f"{origin}: the file name {name!r} {problem} — {remedy}")


def destination(folder: str | Path, name: str, *, origin: str) -> Path:
    """`folder / name` once `name` is a safe file name and the path (and its .part file) resolve inside `folder`.

    An existing link named like the file (or its .part) that leads elsewhere raises UnsafeNameError.
    """
    folder = Path(folder)
    path = folder / safe_file_name(name, origin=origin)
    inside = os.path.realpath(folder)
    for candidate in (path, path.with_name(path.name + ".part")):
        resolved = os.path.realpath(candidate)
        if os.path.dirname(resolved) != inside:
            raise UnsafeNameError(
                f"{candidate}: resolves to {resolved}, outside {folder} (a link?) — remove it or choose another name"
            )
    return path


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
    timeout: float = STALL_TIMEOUT,
) -> Path:
    """Fetch `dest` from the first of `urls` (mirrors) that works; return `dest`.

    sha256/size: what the file must match; without them the file is only checked
    against the server's Content-Length. An existing `dest` is verified and kept.
    space_factor: free space required, as a multiple of the file size (2 when the
    file will be extracted beside itself). backoff: seconds before the first retry
    (0 in tests). timeout: seconds to connect, and within which at least STALL_BYTES must
    arrive; a stall is retried like a dropped connection (resuming), and counts as a failure
    even when a few bytes came. Raises DownloadError (or a subclass) naming every URL tried.
    """
    if not (timeout > 0 and math.isfinite(timeout)):
        raise ValueError(f"timeout {timeout!r}: must be a positive, finite number of seconds")
    dest = Path(dest)
    urls = [urls] if isinstance(urls, str) else list(urls)
    if not urls:
        raise ValueError(f"no URL given for {dest}")
    sha256 = sha256.lower() if sha256 else None
    dest.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(dest.parent / f".{dest.name}.lock"), _session_or(session) as s:
        if dest.exists():
            _verify(
                dest, sha256=sha256, size=size, origin=f"existing file {dest}", remedy=f"delete {dest} and run again"
            )
            return dest
        part = dest.with_name(dest.name + ".part")
        errors: list[DownloadError] = []
        for url in urls:
            try:
                digest = _fetch(s, url, part, size, retries, backoff, space_factor, progress, timeout)
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
    timeout: float,
) -> str:
    """Fill `part` with the body at `url`, resuming and retrying; return its SHA-256 hex."""
    hasher = _PartHasher(part)
    failures = 0
    pages_followed = 0
    while True:
        before = part.stat().st_size if part.exists() else 0
        try:
            _attempt(session, url, part, hasher, expected_size, space_factor, progress, timeout)
            return hasher.hexdigest()
        except _FollowPage as page:
            pages_followed += 1
            if pages_followed > 2:
                raise HtmlResponseError(f"{url}: Google Drive keeps answering with a warning page") from None
            url = page.url
            continue
        except _Transient as e:
            after = part.stat().st_size if part.exists() else 0
            # a flaky link that makes progress may go on; a stall never counts as progress (a drip would loop)
            failures = 1 if after > before and not isinstance(e, _Stalled) else failures + 1
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
    timeout: float,
) -> None:
    """One HTTP request: append the rest of the body to `part`; raise _Transient to be retried."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Accept-Encoding": "identity", **auth_headers(url)}  # bytes exactly as stored on the server
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        r = session.get(url, headers=headers, stream=True, timeout=(min(TIMEOUT[0], timeout), timeout))
    except requests.ReadTimeout:
        raise _Stalled(f"no answer within {timeout:g} s") from None
    except (requests.ConnectionError, requests.Timeout) as e:
        raise _Transient(f"connection failed ({_short(e)})") from None
    except requests.RequestException as e:
        raise DownloadError(f"{url}: {_short(e)}") from None
    with r:
        if _already_complete(url, r, offset, part, hasher):
            return
        if r.status_code == 206:
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
        _append_body(url, r, part, hasher, offset, total, progress, timeout)


def _already_complete(url: str, r: requests.Response, offset: int, part: Path, hasher: "_PartHasher") -> bool:
    """Judge the response status: True when the part file already holds everything; raise on errors."""
    status = r.status_code
    if status in _RETRY_STATUS:
        raise _Transient(f"HTTP {status} {r.reason}")
    if status == 416 and offset:  # nothing left after `offset`: complete, or the part is bogus
        if _content_range_total(r.headers.get("Content-Range")) == offset:
            hasher.sync()
            return True
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
    return False


def _append_body(
    url: str,
    r: requests.Response,
    part: Path,
    hasher: "_PartHasher",
    offset: int,
    total: int | None,
    progress: bool,
    timeout: float,
) -> None:
    """Stream the response body onto the end of `part`, hashing as it goes; raise _Transient if it breaks off.

    Each read returns whatever has arrived (read1), so a trickle is seen as it comes: the clock restarts
    whenever STALL_BYTES more bytes are in, and `timeout` seconds without that raise _Stalled. Silence is
    caught by the socket's own read timeout (the same `timeout`), so a stall is detected within 2 x timeout.
    """
    received = offset
    bar = tqdm(
        total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=part.name[:-5],
        disable=not progress, leave=False,
    )  # fmt: skip
    watch = _StallWatch(timeout, received)
    head = b""
    with bar, open(part, "ab") as f:
        while True:
            chunk = _read(r, timeout, received, decode=False)
            if not chunk:
                break
            if offset == 0 and len(head) < _SNIFF_BYTES:  # the first bytes may come in several small reads
                head += chunk
                if _looks_like_html(head):
                    f.close()
                    part.unlink(missing_ok=True)
                    raise HtmlResponseError(_html_message(url, head.decode("utf-8", "replace")))
            _write(f, chunk, part)
            hasher.update(chunk)
            received += len(chunk)
            bar.update(len(chunk))
            watch.check(received)
    if total is not None and received != total:
        raise _Transient(f"connection closed after {received:,} of {total:,} bytes")


class _StallWatch:
    """Raises _Stalled when fewer than STALL_BYTES arrive within `timeout` seconds (the clock restarts each time)."""

    def __init__(self, timeout: float, received: int = 0) -> None:
        self.timeout = timeout
        self.mark_time, self.mark_bytes = time.monotonic(), received

    def check(self, received: int) -> None:
        """Call after each read with the running byte count."""
        now = time.monotonic()
        if received - self.mark_bytes >= STALL_BYTES:
            self.mark_time, self.mark_bytes = now, received
        elif now - self.mark_time > self.timeout:
            raise _Stalled(
                f"stalled: {received - self.mark_bytes:,} bytes in {now - self.mark_time:.1f} s, less than "
                f"{STALL_BYTES:,} within the {self.timeout:g} s timeout, after {received:,} bytes"
            )


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
    head = chunk[:_SNIFF_BYTES].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html"))


def _reject_html(url: str, r: requests.Response, part: Path | None) -> None:
    """Raise for an HTML answer; for a Google Drive warning page, raise _FollowPage to its download link."""
    text = r.raw.read(1 << 20, decode_content=True).decode(r.encoding or "utf-8", "replace")
    if part is not None:
        part.unlink(missing_ok=True)
    if is_google_drive(r.url or url):
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


@contextlib.contextmanager
def _session_or(session: requests.Session | None) -> Iterator[requests.Session]:
    if session is not None:
        yield session
        return
    with requests.Session() as s:
        s.headers["User-Agent"] = USER_AGENT
        yield s


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
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


def fetch_text(
    url: str,
    *,
    session: requests.Session | None = None,
    retries: int = RETRIES,
    backoff: float = BACKOFF,
    timeout: float = STALL_TIMEOUT,
) -> str | None:
    """The body of a small text file at `url`; None when the server has none (403/404/410).

    Connection errors, stalls (as in `download_file`) and 5xx answers are retried like `download_file`'s; an
    HTML page raises HtmlResponseError, and a body over MAX_TEXT_BYTES raises DownloadError.
    """
    failures = 0
    with _session_or(session) as s:
        while True:
            try:
                r = s.get(url, timeout=(min(TIMEOUT[0], timeout), timeout), headers=auth_headers(url), stream=True)
                with r:
                    if r.status_code not in _RETRY_STATUS:
                        body = _small_body(url, r, timeout) if r.status_code == 200 else b""
                        break
                reason = f"HTTP {r.status_code}"
            except (requests.ConnectionError, requests.Timeout) as e:
                reason = _short(e)
            except _Transient as e:
                reason = str(e)
            failures += 1
            if failures > retries:
                raise DownloadError(f"{url}: giving up after {retries} retries: {reason}")
            time.sleep(backoff * 2 ** (failures - 1))
    if r.status_code in (403, 404, 410):  # 403: how S3-style buckets answer for a missing key
        return None
    if r.status_code != 200:
        raise DownloadError(f"{url}: HTTP {r.status_code} {r.reason}")
    text = body.decode(r.encoding or "utf-8", "replace")
    if "text/html" in r.headers.get("Content-Type", "").lower() or _looks_like_html(body):
        raise HtmlResponseError(_html_message(url, text))
    return text


def _read(r: requests.Response, timeout: float, received: int, decode: bool) -> bytes:
    """One read of up to CHUNK_SIZE body bytes (b"" at the end): silence for `timeout` s raises _Stalled, a
    dropped connection _Transient; `received` (bytes so far) only goes into their messages."""
    try:
        return r.raw.read1(CHUNK_SIZE, decode_content=decode)
    except (urllib3.exceptions.ReadTimeoutError, requests.ReadTimeout, TimeoutError):
        raise _Stalled(f"stalled: nothing received for {timeout:g} s after {received:,} bytes") from None
    except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as e:
        raise _Transient(f"connection dropped after {received:,} bytes ({_short(e)})") from None


def _small_body(url: str, r: requests.Response, timeout: float) -> bytes:
    """Read a whole (small) response body, watching for stalls; raise _Transient to be retried."""
    watch, body = _StallWatch(timeout), bytearray()
    while True:
        chunk = _read(r, timeout, len(body), decode=True)
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > MAX_TEXT_BYTES:
            raise DownloadError(f"{url}: more than {MAX_TEXT_BYTES:,} bytes where a small text file was expected")
        watch.check(len(body))
