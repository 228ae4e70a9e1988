"""Run hubs: where a run's events go, with ids, for any number of subscribers."""
