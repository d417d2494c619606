from django.contrib.auth import views as auth_views
from django.urls import path

from batches.web import actions as views_actions
from batches.web import iterate as views_iterate
from batches.web import new as views_new
from batches.web import notifications as views_notifications
from batches.web import output as views_output
from batches.web import pages as views
from batches.web import user_settings as views_settings

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", views.dashboard, name="dashboard"),
    path("batches/new/", views_new.batch_new, name="batch_new"),
    path("batches/new/preview/", views_new.batch_new_preview, name="batch_new_preview"),
    path("batches/new/estimate/", views_new.batch_new_estimate, name="batch_new_estimate"),
    path("batches/new/schema/", views_output.batch_new_schema, name="batch_new_schema"),
    path("batches/<int:batch_id>/", views.batch_detail, name="batch_detail"),
    path("batches/<int:batch_id>/progress/", views.batch_detail_progress,
         name="batch_detail_progress"),
    path("batches/<int:batch_id>/cancel/", views_actions.batch_cancel, name="batch_cancel"),
    path("batches/<int:batch_id>/pause/", views_actions.batch_pause, name="batch_pause"),
    path("batches/<int:batch_id>/resume/", views_actions.batch_resume, name="batch_resume"),
    path("batches/<int:batch_id>/retry-failed/", views_actions.batch_retry_failed,
         name="batch_retry_failed"),
    path("batches/<int:batch_id>/rows/<int:index>/retry/", views_actions.batch_retry_row,
         name="batch_retry_row"),
    path("batches/<int:batch_id>/delete/", views_actions.batch_delete, name="batch_delete"),
    path("batches/<int:batch_id>/budget/", views_actions.batch_budget, name="batch_budget"),
    path("batches/<int:batch_id>/draft/", views_iterate.batch_draft_edit, name="batch_draft_edit"),
    path("batches/<int:batch_id>/sample/", views_iterate.batch_sample, name="batch_sample"),
    path("batches/<int:batch_id>/sample/rows/", views_iterate.batch_sample_rows,
         name="batch_sample_rows"),
    path("batches/<int:batch_id>/start/", views_iterate.batch_start, name="batch_start"),
    path("batches/<int:batch_id>/versions/", views_iterate.batch_new_version,
         name="batch_new_version"),
    path("batches/<int:batch_id>/rerun/", views_iterate.batch_rerun, name="batch_rerun"),
    path("batches/<int:batch_id>/compare/", views_iterate.batch_compare, name="batch_compare"),
    path("batches/<int:batch_id>/compare/export/", views_iterate.batch_compare_export,
         name="batch_compare_export"),
    path("batches/<int:batch_id>/rows/add/", views_actions.batch_add_rows, name="batch_add_rows"),
    path("batches/<int:batch_id>/rows/<int:index>/delete/", views_actions.batch_delete_row,
         name="batch_delete_row"),
    path("settings/", views_settings.user_settings, name="user_settings"),
    path("notifications/", views_notifications.notifications_page, name="notifications"),
    path("notifications/log/", views_notifications.notifications_log, name="notifications_log"),
    path("notifications/endpoints/", views_notifications.endpoint_add,
         name="notifications_endpoint_add"),
    path("notifications/endpoints/<int:endpoint_id>/rotate/",
         views_notifications.endpoint_rotate, name="notifications_endpoint_rotate"),
    path("notifications/endpoints/<int:endpoint_id>/toggle/",
         views_notifications.endpoint_toggle, name="notifications_endpoint_toggle"),
    path("notifications/endpoints/<int:endpoint_id>/delete/",
         views_notifications.endpoint_delete, name="notifications_endpoint_delete"),
    path("notifications/endpoints/<int:endpoint_id>/test/",
         views_notifications.endpoint_test, name="notifications_endpoint_test"),
    path("notifications/deliveries/<int:delivery_id>/redeliver/",
         views_notifications.delivery_redeliver, name="notifications_redeliver"),
    path("notifications/settings/", views_notifications.notification_settings,
         name="notifications_settings"),
    path("notifications/default-secret/", views_notifications.default_secret_rotate,
         name="notifications_default_secret"),
]
