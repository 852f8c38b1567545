from django.urls import path

from webapp.judging import views

app_name = "judging"

urlpatterns = [
    path("", views.judge_job_list, name="list"),
    path("new/", views.judge_job_create, name="create"),
    path("<int:job_id>/", views.judge_job_detail, name="detail"),
    path("<int:job_id>/cancel/", views.judge_job_cancel, name="cancel"),
    path("<int:job_id>/retry/", views.judge_job_retry, name="retry"),
]
