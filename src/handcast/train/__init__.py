"""Training: configs, checkpoint I/O, Lightning modules."""
