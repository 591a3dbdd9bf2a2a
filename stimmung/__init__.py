"""Stimmung: streaming social listening for social CRM."""

__version__ = "0.1.0"
