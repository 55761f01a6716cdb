"""Fakes of remote services that the real client libraries talk to over HTTP."""
