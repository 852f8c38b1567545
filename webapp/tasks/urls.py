from django.urls import path

from webapp.tasks import views

app_name = "tasks"

urlpatterns = [
    path("", views.task_list, name="list"),
    path("new/", views.task_create, name="create"),
    path("<int:task_id>/", views.task_detail, name="detail"),
    path("<int:task_id>/edit/", views.task_edit, name="edit"),
    path("<int:task_id>/delete/", views.task_delete, name="delete"),
    path("<int:task_id>/examples/new/", views.example_add, name="example_add"),
    path("<int:task_id>/examples/<int:example_id>/", views.example_row, name="example_row"),
    path("<int:task_id>/examples/<int:example_id>/edit/", views.example_edit, name="example_edit"),
    path("<int:task_id>/examples/<int:example_id>/split/", views.example_split, name="example_split"),
    path("<int:task_id>/examples/<int:example_id>/delete/", views.example_delete, name="example_delete"),
    path("<int:task_id>/import/", views.import_upload, name="import_upload"),
    path("<int:task_id>/import/preview/", views.import_preview, name="import_preview"),
    path("<int:task_id>/import/confirm/", views.import_confirm, name="import_confirm"),
    path("<int:task_id>/import/cancel/", views.import_cancel, name="import_cancel"),
]
