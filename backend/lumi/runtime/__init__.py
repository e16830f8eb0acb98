"""The cluster runtime: Ray connection, workers, scheduling, metering. Imports graph and compiler."""
