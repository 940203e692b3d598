"""LibriSpeech on demand: the splits of openslr resource 12, fetched, verified and extracted when missing.

`ensure_splits()` makes every LibriSpeech split named in a dataset spec present
under `<data_dir>/LibriSpeech/`, and `ensure_librispeech()` does it for one
split: a split already extracted returns at once without network traffic, a
missing one is downloaded with `asr.download.download_file` (resumable,
SHA-256-checked against the sums in `resources.json`) and unpacked with
`asr.archive.extract_archive`. `LIBRISPEECH_BASE_URL` points it at another
server (a local mirror, or the loopback server of the tests); a `SHA256SUMS`
file published there replaces the built-in sums for that server. Reading the
extracted tree is `asr.data`'s job.
"""

import os
import re
from pathlib import Path, PurePosixPath

import requests

from asr.archive import MARKER, extract_archive
from asr.download import BACKOFF, RETRIES, USER_AGENT, ChecksumError, DownloadError, download_file, fetch_text
from asr.sources import load_manifest

LIBRISPEECH_SPLITS: tuple[str, ...] = tuple(load_manifest()["librispeech"]["splits"])
LIBRISPEECH_ALIASES: dict[str, list[str]] = dict(load_manifest()["librispeech"]["aliases"])
LIBRISPEECH_MIRRORS: tuple[str, ...] = tuple(load_manifest()["librispeech"]["mirrors"])
LIBRISPEECH_SPACE_FACTOR = 2.1  # archive + extracted tree (FLAC does not compress further) + slack
BASE_URL_ENV = "LIBRISPEECH_BASE_URL"


def expand_librispeech(name: str) -> list[str]:
    """A split name -> [split]; an alias such as 'train-960' -> its splits."""
    if name in LIBRISPEECH_ALIASES:
        return list(LIBRISPEECH_ALIASES[name])
    if name in LIBRISPEECH_SPLITS:
        return [name]
    known = ", ".join([*LIBRISPEECH_SPLITS, *LIBRISPEECH_ALIASES])
    raise ValueError(f"{name!r} is not a LibriSpeech split; choose from {known}")


def ensure_splits(spec: str, data_dir: str | Path, download: bool) -> None:
    """Make every LibriSpeech split named in a `+`-joined dataset spec present under `<data_dir>/LibriSpeech/`.

    Aliases such as 'train-960' count as their splits; parts that are not LibriSpeech
    names (CustomDir folders) are left alone. A missing split is downloaded when
    `download`, and otherwise raises FileNotFoundError naming its folder and the
    --no_download flag; splits are handled in spec order.
    """
    for part in spec.split("+"):
        for name in LIBRISPEECH_ALIASES.get(part, (part,)):
            if name in LIBRISPEECH_SPLITS:
                ensure_librispeech(name, data_dir, download=download)


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
    source = "the openslr SHA-256 in asr/resources.json"
    with requests.Session() as session:
        session.headers["User-Agent"] = USER_AGENT
        if base:
            urls = [f"{base}/{name}"]
            published = fetch_sha256sums(f"{base}/SHA256SUMS", session=session, retries=retries, backoff=backoff)
            if published is None:
                print(f"LibriSpeech {split}: {base} publishes no SHA256SUMS; checking the openslr SHA-256", flush=True)
            else:
                if name not in published:
                    raise DownloadError(
                        f"{base}/SHA256SUMS has no line for {name} — add one (sha256sum {name}), or remove the file "
                        "to check against the openslr SHA-256"
                    )
                sha256 = published[name]
                source = f"{base}/SHA256SUMS"
        else:
            urls = [f"{mirror}/{name}" for mirror in LIBRISPEECH_MIRRORS]
        archive = data_dir / "downloads" / name
        print(f"LibriSpeech {split}: fetching {urls[0]} -> {archive}", flush=True)
        try:
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
        except ChecksumError as e:  # say where the expected sum came from: a wrong SHA256SUMS is fixed there
            raise ChecksumError(f"{e} (expected SHA-256 from {source})") from None
    print(f"LibriSpeech {split}: checksum verified; extracting into {split_dir}", flush=True)
    extract_archive(archive, split_dir, subdir=f"LibriSpeech/{split}", progress=progress)
    if not keep_archive:
        archive.unlink(missing_ok=True)
    return split_dir


def fetch_sha256sums(
    url: str, *, session: requests.Session | None = None, retries: int = RETRIES, backoff: float = BACKOFF
) -> dict[str, str] | None:
    """Parse a `sha256sum`-format file at `url` into {file name: hex}; None when the server has none (403/404)."""
    text = fetch_text(url, session=session, retries=retries, backoff=backoff)
    if text is None:
        return None
    sums: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = re.fullmatch(r"([0-9a-fA-F]{64}) [ *](.+)", line.strip())
        if not m:
            raise DownloadError(
                f"{url}: line {number} is not '<sha256>  <file name>' ({line[:100]!r}) — fix or remove that file"
            )
        name, digest = PurePosixPath(m.group(2)).name, m.group(1).lower()
        if sums.get(name, digest) != digest:
            raise DownloadError(f"{url}: line {number} gives {name} a second, different SHA-256 — fix that file")
        sums[name] = digest
    return sums
