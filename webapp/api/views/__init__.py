"""The REST API's viewsets, one module per app (the shared base, scoping and filters in base.py); urls.py registers
them from here."""

from webapp.api.views.endpoints import EndpointViewSet
from webapp.api.views.exports import ExportViewSet
from webapp.api.views.judging import CriterionScoreViewSet, JudgeJobViewSet, RolloutScoreViewSet
from webapp.api.views.projects import ProjectViewSet
from webapp.api.views.reviews import (
    GoldResponseViewSet,
    HumanLabelViewSet,
    RankingLabelViewSet,
    ReviewItemViewSet,
    ReviewQueueViewSet,
)
from webapp.api.views.rollouts import GenerationJobViewSet, RolloutViewSet
from webapp.api.views.rubrics import RubricVersionViewSet, RubricViewSet
from webapp.api.views.runs import CheckpointViewSet, TrainingMetricViewSet, TrainingRunViewSet
from webapp.api.views.tasks import ExampleViewSet, TaskViewSet

__all__ = [
    "ProjectViewSet",
    "TaskViewSet",
    "ExampleViewSet",
    "RubricViewSet",
    "RubricVersionViewSet",
    "EndpointViewSet",
    "GenerationJobViewSet",
    "RolloutViewSet",
    "JudgeJobViewSet",
    "CriterionScoreViewSet",
    "RolloutScoreViewSet",
    "ReviewQueueViewSet",
    "HumanLabelViewSet",
    "ReviewItemViewSet",
    "GoldResponseViewSet",
    "RankingLabelViewSet",
    "TrainingRunViewSet",
    "TrainingMetricViewSet",
    "CheckpointViewSet",
    "ExportViewSet",
]
