"""Who may see and change what: roles, scopes and the guards that apply them."""
