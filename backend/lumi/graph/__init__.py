"""The graph layer: op table, IR, tracing, composites and the file format. Knows NumPy only."""
