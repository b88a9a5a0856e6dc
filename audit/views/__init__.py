"""Views, one module per screen group: imports, review, dashboard, releases."""
