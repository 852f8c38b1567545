"""The rubric tools' pages, served under the `rubrics` URL namespace (webapp/urls.py joins both lists): the tools
run judges and generation, so they sit above judging and rollouts while the rubrics app stays below them."""

from django.urls import path

from webapp.rubric_tools import views

# Rubric tools: live preview, AI drafts, dry run (webapp/rubric_tools/views.py).
urlpatterns = [
    path("versions/<int:version_id>/preview/", views.preview_version, name="preview"),
    path("preview/", views.preview_spec, name="preview_spec"),
    path("preview/run/", views.preview_run, name="preview_run"),
    path("preview/<int:job_id>/", views.preview_job, name="preview_job"),
    path("draft/", views.draft_start, name="draft"),
    path("drafts/<int:job_id>/", views.draft_job, name="draft_job"),
    path("drafts/<int:job_id>/accept/", views.draft_accept, name="draft_accept"),
    path("versions/<int:version_id>/dry-run/", views.dryrun_start, name="dryrun"),
    path("dry-runs/<int:job_id>/", views.dryrun_job, name="dryrun_job"),
]
