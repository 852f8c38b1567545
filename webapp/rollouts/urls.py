from django.urls import path

from webapp.rollouts import views

app_name = "rollouts"

urlpatterns = [
    # The browser (list, detail, group) is webapp/rollout_browser/urls.py, joined into this namespace in webapp/urls.py.
    path("jobs/", views.job_list, name="jobs"),
    path("jobs/new/", views.job_create, name="job_create"),
    path("jobs/<int:job_id>/", views.job_detail, name="job_detail"),
    path("jobs/<int:job_id>/cancel/", views.job_cancel, name="job_cancel"),
    path("jobs/<int:job_id>/retry/", views.job_retry, name="job_retry"),
]
