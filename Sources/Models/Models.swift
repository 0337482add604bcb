// Models module. See ARCHITECTURE.md.
