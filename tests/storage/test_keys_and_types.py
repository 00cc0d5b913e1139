"""Keys never carry a client's path, and types come from the bytes."""

from __future__ import annotations

import pytest

from storage.detection import detect_type
from storage.keys import MAX_NAME_CHARS, sanitise_name


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system32\\evil.exe", "evil.exe"),
        (".htaccess", "htaccess"),
        ("-rf", "rf"),
        ("Résumé final (2).docx", "Resume-final-2-.docx"),
        ("日本語.txt", "txt"),
        ("", "file"),
        ("...", "file"),
        ("a\x00b.png", "a-b.png"),
        ("/", "file"),
    ],
)
def test_names_are_sanitised(name, safe):
    assert sanitise_name(name) == safe


def test_long_names_are_cut_keeping_the_extension():
    safe = sanitise_name("x" * 500 + ".tar.gz")

    assert len(safe) <= MAX_NAME_CHARS and safe.endswith(".gz")


@pytest.mark.parametrize(
    ("head", "mime"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "image/png"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "image/jpeg"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3", "application/pdf"),
        (b"GIF89a\x01\x00\x01\x00", "image/gif"),
        (b"PK\x03\x04\x14\x00\x00\x00", "application/zip"),
        (b"<!DOCTYPE html><html>", "text/html"),
        (b"\xef\xbb\xbf  <html><body>", "text/html"),
        (b"<!-- hi --><script>alert(1)</script>", "text/html"),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg">', "image/svg+xml"),
        (b"<svg onload=alert(1)>", "image/svg+xml"),
        (b'<?xml version="1.0"?><note/>', "application/xml"),
        ("plain text, café".encode(), "text/plain"),
        (b"\x00\x01\x02\x03binary", "application/octet-stream"),
        (b"", "application/octet-stream"),
    ],
)
def test_types_come_from_the_bytes(head, mime):
    assert detect_type(head) == mime


def test_a_utf8_character_cut_by_the_head_is_still_text():
    assert detect_type(("é" * 10).encode()[:-1]) == "text/plain"
