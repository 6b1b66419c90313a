"""Follow-up tasks on deals and tickets."""
