from django.urls import path

from webapp.endpoints import views

app_name = "endpoints"

urlpatterns = [path("", views.endpoint_list, name="list")]
