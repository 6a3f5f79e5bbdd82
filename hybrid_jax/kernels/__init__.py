"""Hot-path ops, each with a plain-jnp reference and an implementation dispatcher."""
