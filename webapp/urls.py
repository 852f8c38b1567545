from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from webapp.core import views as core_views
from webapp.rollout_browser import urls as rollout_browser_urls
from webapp.rollouts import urls as rollout_urls
from webapp.rubric_tools import urls as rubric_tool_urls
from webapp.rubrics import urls as rubric_urls

project_sections = [
    path("tasks/", include("webapp.tasks.urls")),
    # The rubric editor (rubrics) and its tools (rubric_tools, an app above judging) share the `rubrics` namespace.
    path("rubrics/", include((rubric_urls.urlpatterns + rubric_tool_urls.urlpatterns, "rubrics"))),
    path("endpoints/", include("webapp.endpoints.urls")),
    # Generation jobs (rollouts) and the rollout browser (rollout_browser, above judging and reviews): one namespace.
    path("rollouts/", include((rollout_browser_urls.urlpatterns + rollout_urls.urlpatterns, "rollouts"))),
    path("judging/", include("webapp.judging.urls")),
    path("review/", include("webapp.reviews.urls")),
    path("training/", include("webapp.runs.urls")),
    path("exports/", include("webapp.exports.urls")),
    path("compare/", include("webapp.compare.urls")),
]

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", core_views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/", include("webapp.api.urls")),
    path("p/<int:project_id>/", include(project_sections)),
    path("", include("webapp.core.urls")),
]

handler403 = "webapp.core.errorviews.permission_denied"
handler404 = "webapp.core.errorviews.page_not_found"
handler500 = "webapp.core.errorviews.server_error"
