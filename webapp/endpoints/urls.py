from django.urls import path

from webapp.endpoints import views

app_name = "endpoints"

urlpatterns = [
    path("", views.endpoint_list, name="list"),
    path("new/", views.endpoint_create, name="create"),
    path("<int:endpoint_id>/", views.endpoint_edit, name="edit"),
    path("<int:endpoint_id>/delete/", views.endpoint_delete, name="delete"),
    path("<int:endpoint_id>/test/", views.endpoint_test, name="test"),
    path("<int:endpoint_id>/checks/<int:check_id>/", views.endpoint_check, name="check"),
]
