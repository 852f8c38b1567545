"""The score-page guard that apps below reviews use (core.visibility): reviews registers the blind rule at start-up,
and without a registered rule every score page is refused."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied

from webapp.core import visibility


def test_reviews_registers_the_blind_rule_at_start_up():
    from webapp.reviews.apps import ReviewsConfig  # noqa: F401  (apps are ready under pytest-django)

    assert visibility._guard is not None


def test_without_a_registered_rule_every_score_page_is_refused(monkeypatch):
    monkeypatch.setattr(visibility, "_guard", None)
    page = visibility.scores_page(lambda request, project: "scores")
    with pytest.raises(PermissionDenied):
        page(object(), object())


def test_the_registered_rule_decides(monkeypatch):
    seen = []

    def refuse_blind(request):
        seen.append(request)
        if request == "blind":
            raise PermissionDenied("blind")

    monkeypatch.setattr(visibility, "_guard", refuse_blind)
    page = visibility.scores_page(lambda request, project: "scores")
    assert page("sighted", None) == "scores"
    with pytest.raises(PermissionDenied):
        page("blind", None)
    assert seen == ["sighted", "blind"]
