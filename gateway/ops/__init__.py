"""Operations: the HTTP server (health, readiness, metrics, dashboard), the
admin API, Prometheus metrics, config reload, logging."""
