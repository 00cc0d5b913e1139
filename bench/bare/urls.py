from django.urls import path

from bare import views

urlpatterns = [
    path("django/", views.bare_django, name="bare-django"),
    path("drf/", views.BareDrfView.as_view(), name="bare-drf"),
]
