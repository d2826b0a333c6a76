"""The worker's web server: /healthz, /readyz and the retention team's page and JSON API."""
