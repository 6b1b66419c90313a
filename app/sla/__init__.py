"""Service level agreements: business-hours calendars, policies and ticket clocks."""
