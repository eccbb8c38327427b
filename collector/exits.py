"""The exit codes every command keeps (DESIGN §3), and the error that means the last of them."""

EXIT_OK, EXIT_FOUND, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad arguments or configuration: exit 2 with this message, no traceback."""
