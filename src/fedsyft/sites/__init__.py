"""Sites the federation loop trains on: in-process (:class:`LocalSite`) or a PySyft datasite (``SyftSite``)."""

from .base import Site, SiteError, SiteResult
from .local_site import LocalSite

__all__ = ["Site", "SiteError", "SiteResult", "LocalSite"]
