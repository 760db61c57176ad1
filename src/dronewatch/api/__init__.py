"""The HTTP service: devices, policies and alerts for dashboards and SIEMs."""
