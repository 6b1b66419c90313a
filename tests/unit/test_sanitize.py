"""Rich text cleaning: the formatting kept, everything else removed or escaped."""

from __future__ import annotations

import re

import pytest

from app.sanitize import clean_rich_text, has_text, rich_text

# An on* attribute inside a tag.
EVENT_HANDLER = re.compile(r"<[^>]*\son[a-z]+\s*=")

# Each payload must come out without a tag or attribute that runs script.
XSS_PAYLOADS = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    "<img src=x onerror=alert(1)>",
    "<svg onload=alert(1)><circle r=1></svg>",
    "<svg><script>alert(1)</script></svg>",
    '<a href="javascript:alert(1)">link</a>',
    '<a href="JaVaScRiPt:alert(1)">link</a>',
    '<a href="java&#x09;script:alert(1)">link</a>',
    '<a href="data:text/html,<script>alert(1)</script>">link</a>',
    '<a href="vbscript:msgbox(1)">link</a>',
    "<iframe src=//evil.example></iframe>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    '<p style="background:url(javascript:alert(1))">styled</p>',
    '"><img src=x onerror=alert(1)>',
    "<b onmouseover=alert(1)>bold</b>",
    "<object data=javascript:alert(1)></object>",
    "<<script>script>alert(1)<</script>/script>",
    "<scr<script>ipt>alert(1)</script>",
    "<!--<img src=x onerror=alert(1)>-->",
    "<form action=javascript:alert(1)><button>go</button></form>",
    "\ufeff<script>alert(1)</script>",
    '<a href="\u2028javascript:alert(1)">link</a>',
    "<details open ontoggle=alert(1)>",
    "<input autofocus onfocus=alert(1)>",
]


@pytest.mark.parametrize("payload", XSS_PAYLOADS)
def test_clean_rich_text_removes_script(payload: str) -> None:
    cleaned = clean_rich_text(payload).lower()

    assert "<script" not in cleaned
    assert "javascript:" not in cleaned.replace("&lt;", "<")
    assert not EVENT_HANDLER.search(cleaned)
    for tag in ("<img", "<svg", "<iframe", "<object", "<style", "<form", "<input"):
        assert tag not in cleaned, tag
    assert "style=" not in cleaned
    assert "vbscript:" not in cleaned
    assert "data:text" not in cleaned


@pytest.mark.parametrize("payload", XSS_PAYLOADS)
def test_clean_rich_text_is_stable(payload: str) -> None:
    cleaned = clean_rich_text(payload)

    assert clean_rich_text(cleaned) == cleaned


def test_clean_rich_text_keeps_formatting() -> None:
    source = (
        "<p><strong>bold</strong> <em>italic</em> <b>b</b> <i>i</i> "
        "<code>x = 1</code></p><ul><li>one</li></ul><ol><li>two</li></ol>"
        "<blockquote>quoted</blockquote><pre>pre</pre>"
    )

    assert clean_rich_text(source) == source


def test_links_get_rel_and_keep_safe_href() -> None:
    cleaned = clean_rich_text('<a href="https://example.com/a?b=1" title="t">x</a>')

    assert 'href="https://example.com/a?b=1"' in cleaned
    assert 'title="t"' in cleaned
    assert 'rel="noopener noreferrer nofollow"' in cleaned


def test_plain_text_keeps_paragraphs_and_characters() -> None:
    cleaned = clean_rich_text("a < b & c\n\nsecond line\nthird")

    assert cleaned == "<p>a &lt; b &amp; c</p><p>second line<br>third</p>"


def test_markup_only_comment_has_no_text() -> None:
    assert not has_text(clean_rich_text("<img src=x onerror=alert(1)>"))
    assert has_text(clean_rich_text("<b>hi</b>"))


def test_rich_text_filter_returns_markup() -> None:
    shown = rich_text("<b onclick=x()>hi</b>")

    assert str(shown) == "<p><b>hi</b></p>"
    assert hasattr(shown, "__html__")
    assert str(rich_text(None)) == ""
