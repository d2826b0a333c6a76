"""The ``churnwatch`` command line (typer); the entry point is :func:`churnwatch.cli.main.main`."""
