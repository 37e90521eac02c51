"""Templates in two languages: zh-CN and en, from gettext catalogues (``locale/*/messages.po``).

Message ids are English; each language gets its own Jinja environment with the catalogue's
gettext installed (``{{ _("Signals") }}``, ``{% trans %}``). The browser's choice is a cookie set
by the language switch, else its Accept-Language.
"""

from __future__ import annotations

import datetime as dt
import math
from functools import cache
from pathlib import Path
from typing import Any

from babel.messages.pofile import read_po
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request

HERE = Path(__file__).parent
LANGUAGES = {"zh-CN": "zh_CN", "en": "en"}  # the language tag -> its catalogue folder
LANG_COOKIE = "pvsignal_lang"
DEFAULT_LANGUAGE = "en"


def language_of(request: Request) -> str:
    chosen = request.cookies.get(LANG_COOKIE)
    if chosen in LANGUAGES:
        return chosen
    accepted = request.headers.get("accept-language", "").lower()
    return "zh-CN" if accepted.startswith("zh") else DEFAULT_LANGUAGE


@cache
def messages(language: str) -> dict[str, str]:
    """msgid -> msgstr of the language's catalogue (untranslated entries fall back to the id)."""
    path = HERE / "locale" / LANGUAGES[language] / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as handle:
        catalogue = read_po(handle)
    return {m.id: m.string for m in catalogue if m.id and isinstance(m.id, str) and m.string}


@cache
def environment(language: str) -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    table = messages(language)

    def gettext(message: str) -> str:
        return table.get(message, message)

    def ngettext(singular: str, plural: str, n: int) -> str:
        return gettext(singular if n == 1 else plural)

    env.install_gettext_callables(gettext, ngettext, newstyle=True)  # type: ignore[attr-defined]
    env.filters["num"] = number
    env.filters["when"] = when
    env.globals["language"] = language
    return env


def compile_templates() -> None:
    """Compile every template in both languages (0.1-0.3 s), so that no page's first view
    does it."""
    for language in LANGUAGES:
        env = environment(language)
        for name in env.list_templates(extensions=["html"]):
            env.get_template(name)


def number(value: Any, digits: int = 2) -> str:
    """A statistic for the table: ``–`` when undefined, ``∞`` when infinite."""
    if value is None:
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    if math.isnan(value):
        return "–"
    return f"{value:.{digits}f}"


def when(value: str | None) -> str:
    """An ISO timestamp as 'YYYY-MM-DD HH:MM' UTC (dates stay dates)."""
    if not value:
        return "–"
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return value
    if len(value) <= 10:
        return value
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M")
