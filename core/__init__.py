"""Cross-cutting pieces shared by every role: settings, constants, errors, logging and the CLI."""
