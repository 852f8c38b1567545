from django.urls import path

from webapp.rubrics import views

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

