"""bot_transfer without a database: the PDF (accents, escaping, fonts, real viewers), the
templates, the flow decisions and the settings checks."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import plugins.bot_transfer as bot_transfer
from core.config import ConfigError, load_settings
from core.plugins import Catalog, explicit
from plugins.bot_transfer.flows import decide, normalize
from plugins.bot_transfer.pdf import MISSING, PdfError, printable, render_pdf
from plugins.bot_transfer.schema import BotTransferSettings
from plugins.bot_transfer.templating import Templates, safe_filename
from tests import recording_provider
from tests.system_packages import ensure_program
from tests.test_bot_transfer_helpers import flat, pdf_text

START = datetime(2026, 3, 1, 14, 0, tzinfo=UTC)
SPANISH = "¿Puedo pagar mañana? Año, niño, acción, pingüino, ¡ÑANDÚ!"
PORTUGUESE = "Não, obrigado: coração, ação, avô, à vista, pôr, Conceição"


def summary_context(texts: list[str], name: str | None = "José Núñez") -> dict:
    messages = [{
        "id": index, "direction": "in" if index % 2 == 0 else "out", "from_customer": index % 2 == 0,
        "sender": "customer" if index % 2 == 0 else "agent", "kind": "text", "text": text, "attachments": [],
        "at": START + timedelta(minutes=index), "status": "read",
    } for index, text in enumerate(texts)]
    return {
        "contact": {"name": name, "address": "+5511988887777", "phone": "+5511988887777", "wa_id": None},
        "conversation": {"id": 7, "number_id": "n1", "owner": "bot", "state": "open", "created_at": START, "last_message_at": START},
        "number": {"id": "n1", "phone": "+14155238886", "display_name": "Cobranzas", "provider": "recorder"},
        "vars": {}, "now": START, "messages": messages, "first_message_at": START,
        "last_message_at": messages[-1]["at"] if messages else None, "last_message": messages[-1] if messages else None,
        "last_customer_message": None, "total_messages": len(messages), "reason": "transfer",
        "transfer": {"id": "t1", "reason": None, "by": None},
    }


def summary_pdf(texts: list[str], settings: BotTransferSettings | None = None, **options) -> bytes:
    templates = Templates(settings or BotTransferSettings(), Path("/nonexistent"))
    rendered = templates.render_pdf(summary_context(texts, **options))
    return render_pdf(rendered.html, title=rendered.title, base_dir=rendered.base_dir)


# --------------------------------------------------------------------------- the PDF


def test_the_summary_keeps_accents_and_prints_what_the_customer_wrote_as_text():
    hostile = '<b>no bold</b> <img src="/etc/passwd"> <a href="x">link</a> & {nb} {{ vars }} </p><h1>x'
    data = summary_pdf([SPANISH, PORTUGUESE, hostile, "línea 1\nlínea 2"], name="José <i>Núñez</i> & Cía")
    text = pdf_text(data)
    assert "José <i>Núñez</i> & Cía" in text and "+5511988887777" in text
    assert SPANISH in text and PORTUGUESE in text
    assert hostile in flat(text)  # escaped: shown as typed, nothing interpreted
    assert "línea 1\nlínea 2" in text  # the customer's line breaks are kept
    assert "01/03/2026 14:00" in text and "Resumen de la conversación" in text


def test_characters_the_font_lacks_become_a_box_and_invisible_ones_go():
    assert printable("ok 👍🏽 y 🇲🇽 y 👨\u200d👩\u200d👧 fin") == f"ok {MISSING} y {MISSING} y {MISSING} fin"
    assert printable("a\x00b\x07c\u200bd\u00ade") == "abcde"
    assert printable("e\u0301 n\u0303") == "é ñ"  # decomposed accents (some phones send them) are composed
    assert printable("中文 Ελληνικά Русский €→✓") == f"{MISSING} Ελληνικά Русский €→✓"
    text = pdf_text(summary_pdf(["Gracias 🙏🙏 ¡listo! ❤️ Привет"]))
    assert f"Gracias {MISSING} ¡listo! ❤ Привет" in text


def test_the_pdf_opens_in_poppler(pytestconfig):
    """A second reader besides pypdf: poppler, what many desktop viewers use."""
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    pdftotext = ensure_program(Path("/usr/bin/pdftotext"), "poppler-utils", capture.global_and_fixture_disabled)
    data = summary_pdf([SPANISH, PORTUGUESE] * 40)
    result = subprocess.run([str(pdftotext), "-", "-"], input=data, capture_output=True, check=True)
    assert SPANISH.encode() in result.stdout and b"Syntax Error" not in result.stderr
    info = subprocess.run([str(pdftotext.with_name("pdfinfo")), "-"], input=data, capture_output=True, check=True).stdout.decode()
    assert "Pages:" in info and "Title:           Resumen de la conversación" in info


def test_a_long_transcript_spans_pages_with_page_numbers():
    from pypdf import PdfReader
    import io

    data = summary_pdf([f"mensaje número {index}: {SPANISH}" for index in range(200)])
    pages = PdfReader(io.BytesIO(data)).pages
    assert len(pages) > 3
    assert f"1 / {len(pages)}" in pages[0].extract_text()
    assert "mensaje número 199" in pages[-1].extract_text()


def test_images_must_be_local_files_and_bad_html_is_a_pdf_error(tmp_path):
    with pytest.raises(PdfError, match="not URLs"):
        render_pdf('<img src="http://169.254.169.254/logo.png">', base_dir=tmp_path)
    with pytest.raises(PdfError):
        render_pdf('<table><tr><td width="10%">a</td><td>b</td></tr></table>')


def test_templates_resolve_beside_the_config_and_undefined_values_are_errors(tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "acuerdo.html.j2").write_text(
        '{% extends "summary.html.j2" %}{% block header %}<h1>Acme: {{ contact.name }}</h1>{% endblock %}')
    settings = BotTransferSettings(pdf_template="t/acuerdo.html.j2", farewell="Adiós {{ vars.falta }}")
    templates = Templates(settings, tmp_path)
    rendered = templates.render_pdf(summary_context(["hola"]))
    assert "<h1>Acme: José Núñez</h1>" in rendered.html and "<h2>Mensajes</h2>" in rendered.html
    assert rendered.base_dir == tmp_path / "t"  # images beside the team's template
    from jinja2 import UndefinedError
    with pytest.raises(UndefinedError):
        templates.render_farewell(summary_context([]))
    from jinja2 import TemplateNotFound
    with pytest.raises(TemplateNotFound, match="nope.html.j2"):
        Templates(BotTransferSettings(pdf_template="nope.html.j2"), tmp_path)


def test_the_default_farewell_depends_on_why_and_filenames_are_safe():
    templates = Templates(BotTransferSettings(), Path("/nonexistent"))
    context = summary_context([])
    assert templates.render_farewell(context).startswith("¡Gracias por escribirnos, José Núñez! Te enviamos el resumen")
    assert templates.render_farewell({**context, "reason": "inactivity"}).startswith("Cerramos esta conversación por inactividad.")
    assert templates.render_farewell(summary_context([], name=None)).startswith("¡Gracias por escribirnos! Te enviamos")
    assert safe_filename("Acuerdo de pago — José/../Núñez") == "Acuerdo-de-pago-Jose-.-Nunez.pdf"
    assert safe_filename("../../") == "documento.pdf" and safe_filename("x.PDF") == "x.PDF"


# --------------------------------------------------------------------------- flow decisions


FLOW = BotTransferSettings.model_validate({
    "handoff_keywords": ["agente", "hablar con alguien"],
    "rules": [{"keywords": ["menu"], "menu": "main"}, {"regex": r"(?i)\bfactura\w*", "reply": "Facturas"}],
    "menus": {"main": {"text": "Elige", "options": [
        {"label": "Horarios", "reply": "9 a 18"}, {"label": "Pagos y cuotas", "reply": "Pix"}, {"label": "Persona", "handoff": True},
    ]}},
})


def test_normalize_ignores_case_accents_and_punctuation():
    assert normalize("  ¡MENÚ!  ") == "menu"
    assert normalize("Quiero   hablar con ALGUIEN, ya.") == "quiero hablar con alguien ya"


@pytest.mark.parametrize(("menu", "text", "expected"), [
    ("main", "2", "Pix"), ("main", " 2) ", "Pix"), ("main", "pagos y cuotas", "Pix"), ("main", "1", "9 a 18"),
    (None, "2", None), ("main", "9", None), ("main", "22", None),
    (None, "mis FACTURAS", "Facturas"), (None, "el menú por favor", "menu:main"),
    ("main", "AGENTE", "handoff"), (None, "quiero hablar con alguien", "handoff"), ("main", "3", "handoff"),
    (None, "agentes", None),  # whole words only
])
def test_decide(menu, text, expected):
    decision = decide(FLOW, menu, text)
    if decision is None:
        assert expected is None
        return
    action = decision.action
    got = "handoff" if action.handoff else (f"menu:{action.menu}" if action.menu else action.reply)
    assert got == expected, decision


# --------------------------------------------------------------------------- settings


def _problems(tmp_path: Path, table: str) -> str:
    path = tmp_path / "hookline.toml"
    path.write_text('[plugins]\nenabled = ["bot_transfer"]\n[plugins.bot_transfer]\n' + table)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, Catalog(explicit({"bot_transfer": bot_transfer, "recorder": recording_provider})), {})
    return str(caught.value)


@pytest.mark.parametrize(("table", "expected"), [
    ('afterr = "close"\n', "plugins.bot_transfer.afterr"),
    ('farewell = "{{ contact.name "\n', "plugins.bot_transfer.farewell: not a valid Jinja2 template"),
    ('timezone = "America/Atlantis"\n', "unknown time zone"),
    ('[[plugins.bot_transfer.rules]]\nregex = "(unclosed"\nreply = "x"\n', "plugins.bot_transfer.rules[0].regex"),
    ('[[plugins.bot_transfer.rules]]\nkeywords = ["menu"]\nmenu = "nope"\n', "rules[0].menu: no menu named 'nope'"),
    ('[plugins.bot_transfer.fallback]\n', "plugins.bot_transfer.fallback: give at least one of reply"),
    ('farewell = "x"\nfarewell_template = "f.j2"\n', "not both"),
    ('inactivity_seconds = 0\n', "plugins.bot_transfer.inactivity_seconds"),
])
def test_settings_problems_fail_at_start_naming_the_key(tmp_path, table, expected):
    assert expected in _problems(tmp_path, table)


GUIDE = Path(__file__).resolve().parents[1] / "docs" / "workflows" / "bot_transfer.md"


def test_a_complete_example_config_validates(tmp_path):
    example = GUIDE.read_text()
    table = example.split("```toml\n", 1)[1].split("```", 1)[0]  # the first TOML block is the full example
    path = tmp_path / "hookline.toml"
    path.write_text('[plugins]\nenabled = ["bot_transfer"]\n' + table)
    settings = load_settings(path, Catalog(explicit({"bot_transfer": bot_transfer})), {}).plugin_settings["bot_transfer"]
    assert settings.menus and settings.rules and settings.fallback and settings.inactivity_seconds


def test_the_documented_templates_render(tmp_path):
    import re

    from PIL import Image

    blocks = re.findall(r"```(\w+)\n(.*?)```", GUIDE.read_text(), flags=re.DOTALL)
    agreement = next(body for language, body in blocks if language == "html")
    extended, farewell = [body for language, body in blocks if language == "jinja"]
    for name, body in (("acuerdo.html.j2", agreement), ("resumen.html.j2", extended), ("despedida.txt.j2", farewell)):
        (tmp_path / name).write_text(body)
    Image.new("RGB", (90, 30), (20, 60, 140)).save(tmp_path / "logo.png")
    context = summary_context([SPANISH, PORTUGUESE])
    context["vars"] = {"empresa": "Acme Cobranzas", "nit": "900.123.456-7", "monto": "$ 1.250.000", "cuotas": 3}
    for template in ("acuerdo.html.j2", "resumen.html.j2"):
        templates = Templates(BotTransferSettings(pdf_template=template, farewell_template="despedida.txt.j2"), tmp_path)
        rendered = templates.render_pdf(context)
        text = flat(pdf_text(render_pdf(rendered.html, title=rendered.title, base_dir=rendered.base_dir)))
        assert "José Núñez" in text and "Acme Cobranzas" in text
        if template == "acuerdo.html.j2":
            assert "Monto total $ 1.250.000" in text and "Cuotas 3" in text
    assert templates.render_farewell(context).startswith("¡Gracias, José Núñez! Te enviamos tu acuerdo de pago en PDF.")
