"""Demo and benchmark data: the generator and the demo users."""
