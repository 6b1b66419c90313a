"""arq tasks; each calls the same services the web uses."""
