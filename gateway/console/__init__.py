"""The operator's console: REST API, web UI and their shared service, over the running gateway."""
