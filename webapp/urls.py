from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from webapp.core import views as core_views

project_sections = [
    path("tasks/", include("webapp.tasks.urls")),
    path("rubrics/", include("webapp.rubrics.urls")),
    path("endpoints/", include("webapp.endpoints.urls")),
    path("rollouts/", include("webapp.rollouts.urls")),
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
