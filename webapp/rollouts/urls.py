from django.urls import path

from webapp.rollouts import views

app_name = "rollouts"

urlpatterns = [
    path("", views.rollout_list, name="list"),
    path("<int:rollout_id>/", views.rollout_detail, name="detail"),
    path("groups/<str:group_key>/", views.rollout_group, name="group"),
    path("jobs/", views.job_list, name="jobs"),
    path("jobs/new/", views.job_create, name="job_create"),
    path("jobs/<int:job_id>/", views.job_detail, name="job_detail"),
    path("jobs/<int:job_id>/cancel/", views.job_cancel, name="job_cancel"),
    path("jobs/<int:job_id>/retry/", views.job_retry, name="job_retry"),
]
