from django.urls import path

from degradation import api

urlpatterns = [
    path("health", api.DegradationHealthView.as_view(), name="degradation-health"),
    path("circuits", api.CircuitsView.as_view(), name="degradation-circuits"),
]
