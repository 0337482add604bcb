// Service module. See ARCHITECTURE.md.
