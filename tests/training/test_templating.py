"""Bounded Jinja sandbox: no template costs more than its budget of work, memory and time (issue 15 item 3)."""

from __future__ import annotations

import resource
import time

import pytest
from jinja2 import StrictUndefined

from training.templating import MAX_STEPS, TemplateLimitError, bounded_environment

HOSTILE = {
    "nested loops": "{% for i in range(10000) %}{% for j in range(1000) %}x{% endfor %}{% endfor %}",
    "triple empty loops": (
        "{% for i in range(1000) %}{% for j in range(1000) %}{% for k in range(1000) %}"
        "{% endfor %}{% endfor %}{% endfor %}"
    ),
    "big range": "{% for i in range(100000) %}{% endfor %}",
    "string multiplication": "{{ ('x' * 1000000000)|length }}",
    "list multiplication": "{{ ([1] * 1000000000)|length }}",
    "doubling with ~": "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
    "{% endfor %}{{ ns.s|length }}",
    "doubling with +": "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}"
    "{% endfor %}{{ ns.s|length }}",
    "doubling macro": "{% macro d(s, n) %}{% if n %}{{ d(s ~ s, n - 1) }}{% else %}{{ s|length }}{% endif %}"
    "{% endmacro %}{{ d('x', 40) }}",
    "recursive loop fan-out": "{% for x in [1, 2] recursive %}{% if loop.depth < 40 %}{{ loop([1, 2]) }}{% endif %}"
    "{% endfor %}",
    "center filter": "{{ 'x'|center(1000000000) }}",
    "ljust method": "{{ 'x'.ljust(1000000000) }}",
    "printf width": "{{ '%1000000000s' % 'x' }}",
    "format width": "{{ '{:>1000000000}'.format('x') }}",
    "format filter width": "{{ '%1000000000s'|format('x') }}",
    "replace growth": "{% set s = 'x' * 100000 %}{{ s|replace('x', s) }}",
    "join growth": "{% set s = 'x' * 100000 %}{{ s|join(s) }}",
    "big power": "{{ 7 ** 100000000 }}",
    "huge output": "{% for i in range(10000) %}{{ 'y' * 1000 }}{% endfor %}",
}


@pytest.mark.parametrize("source", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_template_is_stopped_quickly_and_small(source: str) -> None:
    env = bounded_environment(undefined=StrictUndefined)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    with pytest.raises(TemplateLimitError):
        env.from_string(source).render()
    assert time.monotonic() - started < 2.5
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 100


def test_ordinary_templates_render_as_before() -> None:
    env = bounded_environment(undefined=StrictUndefined)
    source = (
        "{% for m in messages %}{{ loop.index }}/{{ loop.length }} {{ m.role|upper }}: {{ m.content }}"
        "{% if not loop.last %}, {% endif %}{% endfor %} | {{ completion ~ '!' }} | "
        "{{ choices|map(attribute='label')|join(', ') }} | {{ '%05.1f' % 3.14159 }} | {{ '{:>6}'.format('r') }} | "
        "{{ 'ab' * 3 }} | {{ range(3)|list }} | {{ 2 ** 10 }}"
    )
    out = env.from_string(source).render(
        messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
        completion="c",
        choices=[{"label": "no"}, {"label": "yes"}],
    )
    assert out == "1/2 USER: hi, 2/2 ASSISTANT: yo | c! | no, yes | 003.1 |      r | ababab | [0, 1, 2] | 1024"


def test_large_data_with_ordinary_filters_renders() -> None:
    env = bounded_environment(undefined=StrictUndefined)
    completion = "word " * 100_000  # 500,000 characters of model output
    out = env.from_string("{{ completion|truncate(20000) }}|{{ completion|wordcount }}|{{ completion|length }}").render(
        completion=completion)
    assert out.endswith("|100000|500000") and len(out) < 20_100


def test_step_budget_allows_loops_up_to_the_limit() -> None:
    env = bounded_environment()
    n = MAX_STEPS // 4
    assert env.from_string("{% for i in range(n // 10) %}{% for j in range(10) %}{% endfor %}{% endfor %}ok").render(
        n=n
    ) == "ok"


def test_time_limit_applies_per_render() -> None:
    env = bounded_environment()
    template = env.from_string("{% for i in items %}{{ i|string|length }}{% endfor %}")

    def slow():
        for i in range(10**9):
            time.sleep(0.001)
            yield i

    started = time.monotonic()
    with pytest.raises(TemplateLimitError, match="longer than"):
        template.render_bounded({"items": slow()}, seconds=0.3)
    assert time.monotonic() - started < 2
