"""The labeling form offers the judge's own answers on the judge's own 0..1 scale."""

from __future__ import annotations

import pytest

from tests.factories import RubricVersionFactory
from webapp.core.errors import ApplicationError
from webapp.reviews.criteria import form_criteria

pytestmark = pytest.mark.django_db


def test_choices_scales_and_programmatic_checks():
    version = RubricVersionFactory(spec={"criteria": [
        {"key": "tone", "title": "Tone", "kind": "judge", "question": "Tone of {{ completion }}?",
         "choices": [{"label": "rude"}, {"label": "flat"}, {"label": "kind"}, {"label": "warm"}]},
        {"key": "depth", "title": "Depth", "kind": "judge", "question": "Depth?", "scale": {"min": 1, "max": 5}},
        {"key": "format", "title": "Format", "kind": "format", "check": "answer_tag"},
    ]})
    tone, depth, fmt = form_criteria(version)
    assert [(o.label, o.value) for o in tone.options] == [("rude", 0.0), ("flat", 1 / 3), ("kind", 2 / 3), ("warm", 1.0)]
    assert tone.value_for(choice="kind") == ("kind", 2 / 3) and tone.index_of(0.7) == 2
    assert depth.is_scale and depth.value_for(number=4) == ("4", 0.75)
    with pytest.raises(ApplicationError, match="outside the scale"):
        depth.value_for(number=6)
    assert [(o.label, o.value) for o in fmt.options] == [("Fail", 0.0), ("Pass", 1.0)]
    with pytest.raises(ApplicationError, match="not a choice"):
        fmt.value_for(choice="maybe")
