from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from audit.views import imports  # noqa: F401

urlpatterns = [
    path("admin/", admin.site.urls),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Imports (staff)
    # IMPORT_URLS
    # Review (auditors, adjudicators)
    # Dashboard
    # Releases
]
