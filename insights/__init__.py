"""Inside sales from one desk: insights with their arithmetic, the health score, the call list."""
