from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from audit.ingest import views as imports
from audit.metrics import views as dashboard
from audit.publish import views as releases
from audit.review import views as review

urlpatterns = [
    path("admin/", admin.site.urls),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Imports (staff)
    path("imports/", imports.batch_list, name="batch_list"),
    path("imports/upload/", imports.upload, name="upload"),
    path("imports/jobs/<int:job_id>/", imports.import_job, name="import_job"),
    path("imports/<int:batch_id>/", imports.batch_detail, name="batch_detail"),
    path(
        "imports/<int:batch_id>/rejected.jsonl",
        imports.rejected_download,
        name="rejected_download",
    ),
    # Review (auditors, adjudicators)
    path("", review.queue, name="queue"),
    path("next/", review.next_item, name="next_item"),
    path("t/<int:pk>/", review.item, name="item"),
    path("t/<int:pk>/skip/", review.skip_item, name="skip_item"),
    path("t/<int:pk>/review/", review.submit_review, name="submit_review"),
    path("adjudicate/", review.adjudication_queue, name="adjudication_queue"),
    path("adjudicate/<int:pk>/", review.adjudicate_item, name="adjudicate_item"),
    path("adjudicate/<int:pk>/decide/", review.submit_adjudication, name="submit_adjudication"),
    # Dashboard
    path("dashboard/", dashboard.dashboard, name="dashboard"),
    path("dashboard/auditors/", dashboard.auditors, name="auditors"),
    # Releases
    path(
        "releases/<str:version>/download/",
        releases.release_download,
        name="release_download",
    ),
]
