"""Helpers only the tests use, kept out of the installed product: the throwaway MIT Kerberos realm
(``kdc``) and a raw TCP peer that answers garbage or nothing (``raw_peer``)."""
