"""Measurements ``manage.py bench`` runs that need more than one transaction or process."""
