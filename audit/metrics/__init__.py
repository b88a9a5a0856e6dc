"""Measure: summaries, agreement, the dashboard and its charts."""
