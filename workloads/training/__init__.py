"""Training job: dataset assembly, search, export, registry and report (the I/O edge of the research pipeline)."""
