from django.urls import path

from webapp.exports import views

app_name = "exports"

urlpatterns = [path("", views.export_list, name="list")]
