"""Email to and from tickets: inbound messages, agent replies, reply templates."""
