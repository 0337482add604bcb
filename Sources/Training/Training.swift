// Training module. See ARCHITECTURE.md.
