// ImageIO module. See ARCHITECTURE.md.
