// CoalesceC module. See ARCHITECTURE.md.
