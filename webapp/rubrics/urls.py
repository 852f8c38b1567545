from django.urls import path

from webapp.rubrics import tool_views, views

app_name = "rubrics"

urlpatterns = [
    path("", views.rubric_list, name="list"),
    path("<int:rubric_id>/", views.rubric_detail, name="detail"),
    path("versions/<int:version_id>/verifiers.json", views.rubric_version_verifiers, name="verifiers"),
    # Editor, versions and diffs (webapp/rubrics/views.py).
    path("new/", views.rubric_create, name="create"),
    path("validate/", views.rubric_validate, name="validate"),
    path("<int:rubric_id>/edit/", views.rubric_edit, name="edit"),
    path("<int:rubric_id>/validate/", views.rubric_validate, name="validate_rubric"),
    path("<int:rubric_id>/diff/", views.rubric_diff, name="diff"),
    path("<int:rubric_id>/v<int:number>/", views.rubric_version_detail, name="version"),
    path("<int:rubric_id>/v<int:number>/restore/", views.rubric_version_restore, name="restore"),
]

# Rubric tools: live preview, AI drafts, dry run (webapp/rubrics/tool_views.py).
urlpatterns += [
    path("versions/<int:version_id>/preview/", tool_views.preview_version, name="preview"),
    path("preview/", tool_views.preview_spec, name="preview_spec"),
    path("preview/run/", tool_views.preview_run, name="preview_run"),
    path("preview/<int:job_id>/", tool_views.preview_job, name="preview_job"),
    path("draft/", tool_views.draft_start, name="draft"),
    path("drafts/<int:job_id>/", tool_views.draft_job, name="draft_job"),
    path("drafts/<int:job_id>/accept/", tool_views.draft_accept, name="draft_accept"),
    path("versions/<int:version_id>/dry-run/", tool_views.dryrun_start, name="dryrun"),
    path("dry-runs/<int:job_id>/", tool_views.dryrun_job, name="dryrun_job"),
]
