from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from webapp.core.errors import ApplicationError
from webapp.rollouts.search_index import (
    SHORT_TERMS_TRADE_OFF,
    short_terms_index_disable,
    short_terms_index_enable,
    short_terms_index_status,
)


class Command(BaseCommand):
    help = (
        "Optional rollout text-search indexes (Postgres). short-terms: a character-pair index that makes searches for "
        "rare terms too short for trigrams ('zq', '42', '€') fast, off by default because every stored rollout pays "
        f"for it ({SHORT_TERMS_TRADE_OFF}). Built and dropped CONCURRENTLY."
    )

    def add_arguments(self, parser):
        parser.add_argument("index", choices=["short-terms"])
        action = parser.add_mutually_exclusive_group(required=True)
        action.add_argument("--enable", action="store_const", const="enable", dest="action",
                            help="Build it (minutes at 1M rollouts; an invalid leftover is rebuilt), then ANALYZE.")
        action.add_argument("--disable", action="store_const", const="disable", dest="action",
                            help="Drop it and its functions.")
        action.add_argument("--status", action="store_const", const="status", dest="action",
                            help="Whether it is there and valid, its size, and the trade-off.")

    def handle(self, *args, index: str, action: str, **options):
        try:
            if action == "enable":
                status = short_terms_index_enable()
            elif action == "disable":
                status = short_terms_index_disable()
            else:
                status = short_terms_index_status()
        except ApplicationError as error:
            raise CommandError(error.message) from None
        self.stdout.write(status.describe())
