"""Views: layout and painting only; behaviour lives in :mod:`cukd_app.controller`."""
