from django.urls import path

from webapp.exports import views

app_name = "exports"

urlpatterns = [
    path("", views.export_list, name="list"),
    path("new/", views.export_create, name="create"),
    path("import/", views.rollouts_import_view, name="import"),
    path("push/", views.export_push, name="push"),
    path("reasoning-gym/", views.reasoning_gym_import_view, name="reasoning_gym"),
    path("reasoning-gym/form/", views.reasoning_gym_form_view, name="reasoning_gym_form"),
    path("verifiers-task/", views.verifiers_task_view, name="verifiers_task"),
    path("<int:export_id>/download/", views.export_download, name="download"),
    path("<int:export_id>/cancel/", views.export_cancel, name="cancel"),
]
