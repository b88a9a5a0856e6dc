"""The team's side of the workflow (issue 11): guidelines, discussion, assignments, saved views
and the queue's bulk actions."""
