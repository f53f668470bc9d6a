"""What belongs to one chapter's experiment rather than to a concept: the configurations, sweeps
and archives of a particular study, built from the concept modules."""
