"""taskplan's own database: the only code that talks to it."""
