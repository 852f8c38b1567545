"""htmx attributes that are inherited must make sense on every element that inherits them.

`hx-disabled-elt` is inherited by every request-issuing element inside the one that declares it. A relative
selector (`find …`, `next …`, `closest …`) is resolved from the element that sends the request, so on an inner
element it usually matches nothing: htmx logs an error on every request and disables nothing (issue 19: the rubric
editor's Save stayed clickable while the kind select's request replaced the form). This walks every template."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

TEMPLATES = Path(__file__).resolve().parents[3] / "templates"
REQUEST_ATTRS = {"hx-get", "hx-post", "hx-put", "hx-patch", "hx-delete"}
RELATIVE = ("find ", "next", "previous", "closest ", "this")
INCLUDE = re.compile(r"""{%\s*include\s+["']([^"']+)["'][^%]*%}""")
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class InheritedDisabledElt(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, str | None]] = []  # (tag, hx-disabled-elt in force)
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        own = dict(attrs)
        inherited = self.stack[-1][1] if self.stack else None
        if "hx-disabled-elt" not in own and inherited and REQUEST_ATTRS & own.keys() \
                and inherited.strip().startswith(RELATIVE):
            self.problems.append(f"line {self.getpos()[0]}: <{tag}> inherits hx-disabled-elt={inherited!r}")
        value = own.get("hx-disabled-elt", inherited)
        if value == "unset":
            value = None
        if tag not in VOID:
            self.stack.append((tag, value))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                return


def expanded(text: str, depth: int = 0) -> str:
    """The template with its `{% include %}`s inlined, so an included fragment is checked inside its includer."""
    if depth > 5:
        return text

    def inline(match: re.Match[str]) -> str:
        included = TEMPLATES / match.group(1)
        return expanded(included.read_text(), depth + 1) if included.is_file() else ""

    return INCLUDE.sub(inline, text)


@pytest.mark.parametrize("template", sorted(TEMPLATES.rglob("*.html")), ids=lambda p: str(p.relative_to(TEMPLATES)))
def test_no_request_issuing_element_inherits_a_relative_disabled_elt(template: Path) -> None:
    parser = InheritedDisabledElt()
    parser.feed(expanded(template.read_text()))
    assert parser.problems == [], f"{template.relative_to(TEMPLATES)}: " + "; ".join(parser.problems)


def test_the_walker_catches_the_editor_bug() -> None:
    parser = InheritedDisabledElt()
    parser.feed('<form hx-post="/x" hx-disabled-elt="find button[value=save]"><select hx-post="/y"></select>'
                '<div hx-post="/z" hx-disabled-elt="unset"></div></form>')
    assert parser.problems == ["line 1: <select> inherits hx-disabled-elt='find button[value=save]'"]
