"""Dagster resources, one module per outside system, each a local and an Azure implementation
behind one interface sharing the resource key: ``sql``, ``blob``, ``events``, ``compute``."""
