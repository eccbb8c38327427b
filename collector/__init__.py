"""Agentless Remote Desktop diagnostics: inventory -> collect -> facts -> checks -> reports."""
