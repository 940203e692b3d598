"""Address forms (Hugging Face, Google Drive, plain URLs), the Drive warning page parser, and HF_TOKEN scoping."""

import pytest

from asr import sources


def test_drive_confirm_url_from_old_style_link():
    page = '<a id="uc-download-link" href="/uc?export=download&amp;confirm=Xy_1&amp;id=FILEID">Download anyway</a>'
    got = sources.drive_confirm_url(page, "https://drive.google.com/uc?export=download&id=FILEID")
    assert got == "https://drive.google.com/uc?export=download&confirm=Xy_1&id=FILEID"
    assert sources.drive_confirm_url("<html>no way</html>", "https://drive.google.com/uc") is None


@pytest.mark.parametrize(
    "spec, url",
    [
        (
            "https://drive.google.com/file/d/1AbCdEfGhIjKlMnOp/view?usp=sharing",
            "https://drive.google.com/uc?export=download&id=1AbCdEfGhIjKlMnOp",
        ),
        (
            "https://drive.google.com/open?id=1AbCdEfGhIjKlMnOp",
            "https://drive.google.com/uc?export=download&id=1AbCdEfGhIjKlMnOp",
        ),
        ("owner/repo/best.pt", "https://huggingface.co/owner/repo/resolve/main/best.pt"),
        ("hf://owner/repo@v1.0/ckpt/best.pt", "https://huggingface.co/owner/repo/resolve/v1.0/ckpt/best.pt"),
        ("https://example.org/a/b.pt?x=1", "https://example.org/a/b.pt?x=1"),
    ],
)
def test_resolve_url(spec, url):
    assert sources.resolve_url(spec) == url


@pytest.mark.parametrize("spec", ["best.pt", "owner/best.pt", "ftp://host/x.pt", "owner/repo/../x"])
def test_resolve_url_rejects_unknown_forms(spec):
    with pytest.raises(ValueError):
        sources.resolve_url(spec)


def test_hf_token_goes_only_to_hugging_face(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    assert sources.auth_headers("https://huggingface.co/o/r/resolve/main/x.pt") == {"Authorization": "Bearer hf_secret"}
    assert sources.auth_headers("https://cdn-lfs.huggingface.co/x") == {"Authorization": "Bearer hf_secret"}
    assert sources.auth_headers("https://evil-huggingface.co/x") == {}
    assert sources.auth_headers("https://example.org/x.pt") == {}
    monkeypatch.delenv("HF_TOKEN")
    assert sources.auth_headers("https://huggingface.co/o/r/resolve/main/x.pt") == {}
