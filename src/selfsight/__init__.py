"""selfsight."""
