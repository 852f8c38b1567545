from django.urls import path

from webapp.rubrics import views

app_name = "rubrics"

urlpatterns = [
    path("", views.rubric_list, name="list"),
    path("<int:rubric_id>/", views.rubric_detail, name="detail"),
    path("versions/<int:version_id>/verifiers.json", views.rubric_version_verifiers, name="verifiers"),
]
