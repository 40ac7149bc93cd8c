"""The live dashboard page (static HTML, CSS and JS; served at /dashboard)."""
