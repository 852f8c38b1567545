from django.contrib.auth.decorators import login_required
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import DefaultRouter

from webapp.api import token, views
from webapp.api.docs import LocalSwaggerView

router = DefaultRouter()
router.register("projects", views.ProjectViewSet, basename="project")

NESTED = [
    ("tasks", views.TaskViewSet, "task"),
    ("examples", views.ExampleViewSet, "example"),
    ("rubrics", views.RubricViewSet, "rubric"),
    ("rubric-versions", views.RubricVersionViewSet, "rubric-version"),
    ("endpoints", views.EndpointViewSet, "endpoint"),
    ("generation-jobs", views.GenerationJobViewSet, "generation-job"),
    ("rollouts", views.RolloutViewSet, "rollout"),
    ("judge-jobs", views.JudgeJobViewSet, "judge-job"),
    ("criterion-scores", views.CriterionScoreViewSet, "criterion-score"),
    ("rollout-scores", views.RolloutScoreViewSet, "rollout-score"),
    ("review-queues", views.ReviewQueueViewSet, "review-queue"),
    ("labels", views.HumanLabelViewSet, "label"),
    ("review-items", views.ReviewItemViewSet, "review-item"),
    ("gold-responses", views.GoldResponseViewSet, "gold-response"),
    ("ranking-labels", views.RankingLabelViewSet, "ranking-label"),
    ("training-runs", views.TrainingRunViewSet, "training-run"),
    ("training-metrics", views.TrainingMetricViewSet, "training-metric"),
    ("checkpoints", views.CheckpointViewSet, "checkpoint"),
    ("exports", views.ExportViewSet, "export"),
]
for prefix, viewset, basename in NESTED:
    router.register(rf"projects/(?P<project_id>[0-9]{{1,18}})/{prefix}", viewset, basename=basename)

urlpatterns = [
    path("v1/", include(router.urls)),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # Interactive docs from drf-spectacular-sidecar's files (no CDN); a browser without a session goes to login.
    path("docs/", login_required(LocalSwaggerView.as_view(url_name="api-schema")), name="api-docs"),
    path("token/", login_required(token.token_page), name="api-token"),
]
