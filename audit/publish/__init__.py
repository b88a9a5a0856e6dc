"""Export and publish: selection, export, releases, cards, verification, archives."""
