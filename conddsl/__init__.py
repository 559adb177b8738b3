"""conddsl: say when a job may run and when it must stop."""
