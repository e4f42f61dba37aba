"""The audit report: frozen dataclasses, JSON (with its schema), terminal rendering."""
