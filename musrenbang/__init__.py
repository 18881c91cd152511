"""musrenbang: the workflow and audit engine for the annual planning cycle (Musrenbang to RKPD)."""

__version__ = "0.1.0"
