// Placeholder; the coalescer backend plugin lands with issue 4.
