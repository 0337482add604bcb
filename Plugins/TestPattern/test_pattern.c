// Placeholder; the C test backend lands with the daemon issue.
