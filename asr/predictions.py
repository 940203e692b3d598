"""A predictions folder (`inference.py --out`): `<id>.txt` files and the record `inference.json` that lists them.

The record says what made the predictions (data, references, checkpoint, decoder) and, under `written`, exactly
the utterance ids this run wrote. A new run first removes the previous run's record and every file that record
lists, so no stale `<id>.txt` of another model survives; `calc_metrics.py` scores only the ids the record lists,
so a file another tool or an older version left in the folder is never scored either.
"""

import contextlib
import errno
import json
from pathlib import Path

from asr.atomic import write_error
from asr.errors import ASRError
from asr.metrics import SOURCE_FILE

# The disk is at fault, not the file: every further write would fail the same way, so stop with one message.
_FATAL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}


def read_record(folder: str | Path) -> dict | None:
    """The record inference.py wrote in `folder`, or None when there is none. A record that is not what
    inference.py writes is one ASRError naming the file."""
    path = Path(folder) / SOURCE_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ASRError(f"{path}: not a valid record ({e}) — rerun inference.py, or remove it and pass "
                       "--transcriptions_dir DIR") from None  # fmt: skip
    if not isinstance(record, dict) or not isinstance(record.get("references"), str | None):
        raise ASRError(f"{path}: not a record inference.py wrote — rerun inference.py, or remove it and pass "
                       "--transcriptions_dir DIR")  # fmt: skip
    written = record.get("written")
    if written is not None and not (isinstance(written, list) and all(isinstance(i, str) for i in written)):
        raise ASRError(f"{path}: 'written' is not a list of utterance ids — rerun inference.py")
    return record


def clear_previous(folder: Path) -> int:
    """Remove the previous run's record and the `<id>.txt`/`<id>.json` files it lists; returns how many files
    went. A record that cannot be read is removed alone (its files cannot be told from others)."""
    try:
        record = read_record(folder)
    except ASRError:
        record = {}
    removed = 0
    for utt_id in (record or {}).get("written") or []:
        for suffix in (".txt", ".json"):
            path = folder / f"{utt_id}{suffix}"
            if Path(utt_id).name == utt_id and path.is_file() and not path.is_symlink():
                path.unlink()
                removed += 1
    (folder / SOURCE_FILE).unlink(missing_ok=True)
    return removed


def write_text(path: Path, text: str, failed: list[str]) -> bool:
    """Write one prediction file; a file that cannot be written (a name too long for the file system, a folder
    in the way) is listed in `failed` and the run goes on. A full or read-only disk stops it: one WriteError."""
    try:
        path.write_text(text, encoding="utf-8")
        return True
    except OSError as e:
        if e.errno in _FATAL:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)  # half a prediction must not be scored
            raise write_error(path, e) from e
        why = f"the name is too long for this file system ({len(path.name)} characters)" if (
            e.errno == errno.ENAMETOOLONG) else (e.strerror or str(e))  # fmt: skip
        failed.append(f"{path}: cannot write ({why}); this utterance has no prediction file")
        return False
