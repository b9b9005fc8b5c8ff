"""One module per ``cellnas`` subcommand; each defines ``register(subparsers, formatter)``."""
