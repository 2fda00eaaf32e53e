"""hookline's bundled plugins. Each is registered through the `hookline` entry-point group,
exactly like a third-party plugin, and uses only the hooks in `core.hookspecs`."""
