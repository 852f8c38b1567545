from __future__ import annotations

from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The demo project seed (`manage.py seed_demo`): it uses every app, so it sits above them, outside `core`."""

    name = "webapp.demo"
    label = "demo"
