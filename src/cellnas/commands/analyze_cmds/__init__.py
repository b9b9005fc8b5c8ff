"""One module per `cellnas analyze STUDY`; each defines ``register(subparsers, formatter_class)``."""
