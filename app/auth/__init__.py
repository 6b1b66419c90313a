"""Users, teams, sign-in and sessions."""
