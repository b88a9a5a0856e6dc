"""The routes. Ids in paths are ``<id:...>``: a row id in the range both databases store
(``MAX_ID``), anything else a 404 before any query, so an over-long number cannot reach a
lookup (SQLite raises OverflowError past 2**63 - 1)."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, register_converter

from audit.ingest import views as imports
from audit.metrics import views as dashboard
from audit.models import MAX_ID
from audit.publish import views as releases
from audit.review import views as review
from audit.team import assignment_views, discussion_views, guideline_views
from audit.team import views_views as saved_views


class IdConverter:
    regex = "[0-9]{1,19}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if not 1 <= number <= MAX_ID:
            raise ValueError(f"{value} is not a row id")  # Django answers 404
        return number

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(IdConverter, "id")

urlpatterns = [
    path("admin/", admin.site.urls),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Imports (staff)
    path("imports/", imports.batch_list, name="batch_list"),
    path("imports/upload/", imports.upload, name="upload"),
    path("imports/jobs/<id:job_id>/", imports.import_job, name="import_job"),
    path("imports/<id:batch_id>/", imports.batch_detail, name="batch_detail"),
    path(
        "imports/<id:batch_id>/rejected.jsonl",
        imports.rejected_download,
        name="rejected_download",
    ),
    # Review (auditors, adjudicators)
    path("", review.queue, name="queue"),
    path("next/", review.next_item, name="next_item"),
    path("t/<id:pk>/", review.item, name="item"),
    path("t/<id:pk>/raw.json", review.raw_record, name="raw_record"),
    path("t/<id:pk>/field/<slug:name>/", review.item_field, name="item_field"),
    path("t/<id:pk>/skip/", review.skip_item, name="skip_item"),
    path("t/<id:pk>/review/", review.submit_review, name="submit_review"),
    path("adjudicate/", review.adjudication_queue, name="adjudication_queue"),
    path("adjudicate/<id:pk>/", review.adjudicate_item, name="adjudicate_item"),
    path("adjudicate/<id:pk>/decide/", review.submit_adjudication, name="submit_adjudication"),
    # Dashboard
    path("dashboard/", dashboard.dashboard, name="dashboard"),
    path("dashboard/auditors/", dashboard.auditors, name="auditors"),
    path("dashboard/monitors/", dashboard.dashboard_monitors, name="dashboard_monitors"),
    # Releases
    path(
        "releases/<str:version>/download/",
        releases.release_download,
        name="release_download",
    ),
    # The HTTP API (token auth, OpenAPI document at api/v1/openapi.json): audit.api
    path("api/v1/", include("audit.api.urls")),
    # The team's side (issue 11): discussion
    path("t/<id:pk>/discussion/", discussion_views.discussion_page, name="discussion"),
    path("t/<id:pk>/discussion/mark/", discussion_views.toggle_mark, name="discussion_mark"),
    path("t/<id:pk>/comments/", discussion_views.add_comment, name="add_comment"),
    path("comments/<id:comment_id>/edit/", discussion_views.edit_comment, name="edit_comment"),
    # Saved views and the queue's bulk actions
    path("views/", saved_views.saved_views, name="saved_views"),
    path("views/menu/", saved_views.saved_views_menu, name="saved_views_menu"),
    path("views/<id:pk>/delete/", saved_views.delete_saved_view, name="delete_saved_view"),
    path("queue/bulk/", saved_views.queue_bulk, name="queue_bulk"),
    # Guidelines (versioned rubric)
    path("guidelines/", guideline_views.guidelines_page, name="guidelines"),
    path("guidelines/history/", guideline_views.guideline_history, name="guideline_history"),
    path("guidelines/v/<id:number>/", guideline_views.guideline_version, name="guideline_version"),
    path("guidelines/diff/", guideline_views.guideline_diff, name="guideline_diff"),
    path("guidelines/edit/", guideline_views.guideline_edit, name="guideline_edit"),
    # Assignments
    path("assignments/", assignment_views.assignment_list, name="assignments"),
    path("assignments/<id:pk>/", assignment_views.assignment_detail, name="assignment_detail"),
    path("my-work/", assignment_views.my_work, name="my_work"),
]
