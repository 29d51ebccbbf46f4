"""The wiring: settings, CLI, server and worker composition. Nothing imports this package."""
