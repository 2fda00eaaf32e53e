"""HTML (from a Jinja2 template) to PDF with fpdf2: pure Python, fonts shipped in the package.

fpdf2 lays out a subset of HTML (headings, paragraphs, bold/italic/underline, font colour and
size, lists, tables, links, horizontal rules, images). Text is set in DejaVu Sans, shipped in
`fonts/`, so accented Latin (Spanish, Portuguese…), Greek and Cyrillic come out as written; a
character the font lacks (an emoji, CJK) becomes `□` and invisible ones are dropped, instead of
fpdf2 failing or silently leaving a gap. Sync and CPU-bound: call it in a thread.
"""

from __future__ import annotations

import logging
import re
import secrets
import unicodedata
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

FONTS = Path(__file__).resolve().parent / "fonts"
FAMILY = "dejavu"
_STYLES = {"": "DejaVuSans.ttf", "B": "DejaVuSans-Bold.ttf", "I": "DejaVuSans-Oblique.ttf", "BI": "DejaVuSans-BoldOblique.ttf"}
MISSING = "\u25a1"  # □, for characters the font cannot draw
_NOT_PLAIN = re.compile(r"[^\t\n\r\x20-\x7e]+")  # runs of anything but printable ASCII
_INVISIBLE = {"Cc", "Cf", "Cs", "Zl", "Zp"}  # controls, zero-width and format characters
_MARKS = {"Mn", "Me"}  # combining marks: kept when the font has them

# fpdf2 subsets the fonts of every document with fontTools, which logs each step at INFO.
logging.getLogger("fontTools.subset").setLevel(logging.WARNING)


class PdfError(Exception):
    """The template's HTML cannot be laid out as a PDF (a bad table, an image that is not a file…)."""


@lru_cache(maxsize=1)
def supported_characters() -> frozenset[int]:
    """Code points every style of the shipped font can draw."""
    from fontTools.ttLib import TTFont

    common: set[int] | None = None
    for filename in _STYLES.values():
        font = TTFont(FONTS / filename, lazy=True)
        try:
            points = set(font.getBestCmap())
        finally:
            font.close()
        common = points if common is None else common & points
    return frozenset(common or ())


def printable(text: str) -> str:
    """`text` in NFC, with what the font cannot draw replaced (one `□` per run) or dropped."""
    return _NOT_PLAIN.sub(_fix_run, unicodedata.normalize("NFC", text))


def _fix_run(match: re.Match[str]) -> str:
    supported = supported_characters()
    out: list[str] = []
    replaced = False  # the previous visible character was replaced: collapse the run (👍🏽, 🇲🇽, 👨‍👩‍👧)
    for character in match.group():
        category = unicodedata.category(character)
        if category in _INVISIBLE:
            continue  # controls, joiners, variation selectors' kin, soft hyphens
        if ord(character) in supported:
            out.append(character)
            replaced = replaced and category in _MARKS
        elif category in _MARKS or 0x1F3FB <= ord(character) <= 0x1F3FF:
            continue  # variation selectors, marks the font lacks, skin tones
        elif not replaced:
            out.append(MISSING)
            replaced = True
    return "".join(out)


def render_pdf(html: str, *, title: str | None = None, base_dir: Path | None = None) -> bytes:
    """Lay out `html` (already escaped by the template) on A4 pages; return the PDF's bytes.

    `<img src>` may name image files relative to `base_dir` (a logo beside the template), never a
    URL: rendering must not fetch anything. A `<title>` in the HTML becomes the document's title;
    `title` is used when there is none.
    """
    from fpdf import FPDF, FontFace
    from fpdf.errors import FPDFException

    class Document(FPDF):
        def footer(self) -> None:
            self.set_y(-12)
            self.set_font(FAMILY, size=8)
            self.set_text_color(120, 120, 120)
            self.cell(0, 8, f"{self.page_no()} / {self.str_alias_nb_pages}", align="C")

    pdf = Document(format="A4")
    # A random page-count alias: customer text that happens to contain "{nb}" stays as written.
    pdf.alias_nb_pages(f"[[pages-{secrets.token_hex(6)}]]")
    pdf.set_creator("hookline")
    if title and "<title>" not in html.lower():
        pdf.set_title(printable(title))
    for style, filename in _STYLES.items():
        pdf.add_font(FAMILY, style, FONTS / filename)
    pdf.set_auto_page_break(True, margin=18)
    pdf.add_page()
    pdf.set_font(FAMILY, size=10)
    try:
        pdf.write_html(printable(html), font_family=FAMILY, image_map=_local_images(base_dir), tag_styles={
            "pre": FontFace(family=FAMILY), "code": FontFace(family=FAMILY),  # fpdf2's Courier is Latin-1 only
            "h1": FontFace(emphasis="B", size_pt=18, color="#1f2937"),
            "h2": FontFace(emphasis="B", size_pt=13, color="#1f2937"),
            "h3": FontFace(emphasis="B", size_pt=11, color="#1f2937"),
        })
        return bytes(pdf.output())
    except (FPDFException, ValueError, KeyError, IndexError, OSError) as exc:
        raise PdfError(f"{type(exc).__name__}: {exc}") from exc


def _local_images(base_dir: Path | None) -> Callable[[str], str]:
    def resolve(src: str) -> str:
        if urlsplit(src).scheme or base_dir is None:
            raise PdfError(f"<img src={src!r}>: images must be files beside the template, not URLs")
        return str((base_dir / src).resolve())

    return resolve
