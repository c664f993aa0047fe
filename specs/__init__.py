"""Campaign specifications shipped with mummi (data only)."""
