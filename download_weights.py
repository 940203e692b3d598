"""Download language models and a model checkpoint, resumable and verified.

Named resources come from asr/resources.json (the official LibriSpeech LMs of
openslr resource 11); a checkpoint comes from --url: a plain http(s) address, a
Hugging Face `owner/repo/path/to/file`, or a Google Drive share link. Every file
lands in --out (default `weights/`, where inference.py looks), is checked
against its SHA-256 where one is known (else its published size), and the
script ends by printing the inference command that uses what it fetched.

    python download_weights.py 3-gram.pruned.1e-7.arpa.gz librispeech-vocab.txt
    python download_weights.py --url owner/repo/best.pt --sha256 <hex>
"""

import argparse
import math
import sys
import textwrap
from pathlib import Path
from urllib.parse import unquote, urlsplit

from asr.config import WeightsConfig, from_args, parser_for
from asr.download import destination, download_file, file_sha256
from asr.errors import run_cli
from asr.sources import load_manifest, resolve_url

DEFAULT_LM = "3-gram.pruned.1e-7.arpa.gz"  # the LM the printed beam-search command uses when it was fetched
# Gzipped ARPA files above this size hold more n-grams than the built-in reader takes (asr.lm
# ARPA_BUILTIN_MAX_NGRAMS, 10M: ~12 bytes per n-gram gzipped in benchmarks/lm_size.py): 3-gram.arpa.gz and
# 4-gram.arpa.gz need kenlm, the pruned 3-gram does not.
BUILTIN_ARPA_MAX_GZ_BYTES = 150 * 2**20


def _resources() -> dict[str, dict]:
    return load_manifest()["resources"]


def _describe(name: str, entry: dict) -> str:
    size = f"{entry['size']:,} bytes" if entry.get("size") else "size unknown"
    if entry.get("sha256"):
        check = f"SHA-256 {entry['sha256']}, as recorded by {entry['sha256_source']}"
    elif entry.get("size"):
        check = f"{entry['sha256_note']}; size as recorded by {entry['size_source']}"
    else:
        check = "no checksum published; size not verified"
    lines = [f"  {name}  [{size}]"]
    for text in (entry["description"], check, "from " + "  or  ".join(entry["urls"][:1])):
        lines += textwrap.wrap(text, width=100, initial_indent="      ", subsequent_indent="      ")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    names = "\n".join(_describe(n, e) for n, e in _resources().items())
    epilog = (
        f"resources (openslr resource 11, https://www.openslr.org/11; mirrors are tried in order):\n{names}\n\n"
        "No checkpoint of this project is published; train one with train.py or pass its address with --url.\n"
        "Downloads resume where they stopped (a <file>.part stays until the file is verified), and a file\n"
        "already in --out is verified and kept. HF_TOKEN is sent to huggingface.co for gated repositories."
    )
    return parser_for(WeightsConfig, description=__doc__.split("\n\n")[0], epilog=epilog)


def _checkpoint_name(url: str) -> str:
    """The URL-decoded last path segment ('' when there is none); checked by asr.download.destination."""
    if "drive.google.com" in url:
        return "checkpoint.pt"  # Drive addresses carry no file name
    return unquote(urlsplit(url).path.rsplit("/", 1)[-1])


def kenlm_installed() -> bool:
    try:
        import kenlm  # noqa: F401
    except ImportError:
        return False
    return True


def needs_kenlm(name: str, entry: dict) -> bool:
    """True for an ARPA resource too big for the built-in reader."""
    return ".arpa" in name and (entry.get("size") or 0) > BUILTIN_ARPA_MAX_GZ_BYTES


def inference_command(checkpoint: str | None, lm: str | None) -> str:
    """The inference.py call that uses the downloaded files."""
    cmd = f"python inference.py --checkpoint {checkpoint or 'runs/<run_name>/best.pt'} --dataset test-clean"
    if lm:
        cmd += f" --decoder beam_lm --lm {lm}"
    return cmd


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = from_args(WeightsConfig, parser.parse_args(argv))
    catalogue = _resources()
    wanted = list(catalogue) if "all" in args.resources else list(dict.fromkeys(args.resources))
    unknown = [n for n in wanted if n not in catalogue]
    if unknown:
        parser.error(f"unknown resource(s) {', '.join(unknown)}; choose from {', '.join(catalogue)} or 'all'")
    if not wanted and not args.url:
        parser.error("nothing to download: name resources (see the list in --help) or pass --url")
    if args.sha256 and not args.url:
        parser.error("--sha256 checks the --url download; named resources carry their own checks")
    if not (args.timeout > 0 and math.isfinite(args.timeout)):
        parser.error(f"--timeout {args.timeout:g}: must be a positive, finite number of seconds")
    out = Path(args.out)
    big = [n for n in wanted if needs_kenlm(n, catalogue[n])]
    if big and not kenlm_installed():  # said before a download of up to 1.3 GB, not after
        print(f"note: {', '.join(big)} can only be decoded with KenLM (too many n-grams for the built-in ARPA "
              "reader): pip install kenlm before running inference.py with it", file=sys.stderr)  # fmt: skip

    # Names are checked before anything is fetched: a URL's last segment is chosen by whoever serves it.
    checkpoint_path = None
    if args.url:
        url = resolve_url(args.url)
        if args.name is not None:
            checkpoint_path = destination(out, args.name, origin="--name")
        else:
            checkpoint_path = destination(out, _checkpoint_name(url), origin=f"--url {args.url}")

    fetched: dict[str, Path] = {}
    for name in wanted:
        entry = catalogue[name]
        path = download_file(entry["urls"], destination(out, name, origin=f"resource {name!r}"),
                             sha256=entry.get("sha256"), size=entry.get("size"), retries=args.retries,
                             timeout=args.timeout)  # fmt: skip
        how = "SHA-256 verified" if entry.get("sha256") else "no checksum published; size verified"
        print(f"{name} -> {path} ({path.stat().st_size:,} bytes; {how})")
        fetched[name] = path
    checkpoint = None
    if checkpoint_path is not None:
        checkpoint = download_file(url, checkpoint_path, sha256=args.sha256, retries=args.retries, timeout=args.timeout)
        if args.sha256:
            print(f"checkpoint -> {checkpoint} (SHA-256 verified)")
        else:
            print(
                f"checkpoint -> {checkpoint} (no --sha256 given: only its length was checked against the server; "
                f"its SHA-256 is {file_sha256(checkpoint)}, pass that next time)"
            )

    lm = fetched.get(DEFAULT_LM) or next((p for n, p in fetched.items() if n.endswith(".arpa.gz")), None)
    print("\nrun inference with:")
    if lm is not None and needs_kenlm(lm.name, catalogue[lm.name]) and not kenlm_installed():
        print("  pip install kenlm")
    print(f"  {inference_command(str(checkpoint) if checkpoint else None, str(lm) if lm else None)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
