"""Comments on deals and tickets."""
