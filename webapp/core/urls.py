from django.urls import path

from webapp.core import views

app_name = "core"

urlpatterns = [
    path("", views.project_list, name="project_list"),
    path("workers/", views.workers, name="workers"),
    path("p/<int:project_id>/", views.dashboard, name="dashboard"),
    path("p/<int:project_id>/members/", views.members, name="members"),
    path("p/<int:project_id>/members/add/", views.member_add, name="member_add"),
    path("p/<int:project_id>/members/<int:user_id>/remove/", views.member_remove, name="member_remove"),
]
