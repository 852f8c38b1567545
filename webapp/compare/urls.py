from django.urls import path

from webapp.compare import views

app_name = "compare"

urlpatterns = [
    path("", views.compare, name="view"),
    path("label/", views.compare_label, name="label"),
]
