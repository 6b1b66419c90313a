"""Search across accounts, contacts, deals, tickets and leads, under the viewer's
scopes and field rules."""
