"""absl entry points (thin mains over the library)."""
