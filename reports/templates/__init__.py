"""Jinja2 templates and the inline stylesheet of the reports (shipped as package data)."""
