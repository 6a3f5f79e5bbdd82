"""Training: losses, optimizer, jitted step."""
