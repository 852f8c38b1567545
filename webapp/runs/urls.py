from django.urls import path

from webapp.runs import views

app_name = "runs"

urlpatterns = [
    path("", views.run_list, name="list"),
    path("new/", views.run_create, name="create"),
    path("compare/", views.run_compare, name="compare"),
    path("<int:run_id>/", views.run_detail, name="detail"),
    path("<int:run_id>/samples/", views.run_samples, name="samples"),
    path("<int:run_id>/cancel/", views.run_cancel, name="cancel"),
    path("<int:run_id>/resume/", views.run_resume, name="resume"),
    path("<int:run_id>/evaluate/", views.run_evaluate, name="evaluate"),
    path("<int:run_id>/evaluations/", views.run_evaluations, name="evaluations"),
    path("<int:run_id>/watch/", views.run_watch_fragment, name="watch"),
    path("<int:run_id>/review/", views.run_review, name="review"),
]
