"""Reports: charts, the model card and the run's dashboards (pure renderers)."""
