"""MLflow: the client layer sweeper writes through, and the read model of a recorded sweep."""
