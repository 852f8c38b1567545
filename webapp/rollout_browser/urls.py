"""The rollout browser's pages, served under the `rollouts` URL namespace (webapp/urls.py joins both lists)."""

from django.urls import path

from webapp.rollout_browser import views

urlpatterns = [
    path("", views.rollout_list, name="list"),
    path("<int:rollout_id>/", views.rollout_detail, name="detail"),
    path("groups/<str:group_key>/", views.rollout_group, name="group"),
]
