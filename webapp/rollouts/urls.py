from django.urls import path

from webapp.rollouts import views

app_name = "rollouts"

urlpatterns = [
    path("", views.rollout_list, name="list"),
    path("<int:rollout_id>/", views.rollout_detail, name="detail"),
    path("groups/<str:group_key>/", views.rollout_group, name="group"),
]
