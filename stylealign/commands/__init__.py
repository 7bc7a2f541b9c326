"""CLI subcommand registration, one module per area; each exposes `register(subparsers)`."""
