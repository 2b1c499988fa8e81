"""Tools for development, tests, the benchmark and the demo: the Kaspi simulator, the
private PostgreSQL, `make run`'s stack. The server never imports them."""
