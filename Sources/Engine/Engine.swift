// Engine module. See ARCHITECTURE.md.
