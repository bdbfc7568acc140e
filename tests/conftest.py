"""Plugins for the whole suite."""

pytest_plugins = ["tests.timeout_guard", "pytester"]
