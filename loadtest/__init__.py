"""giftwire-loadtest: scenarios, ceilings measured in the same run, reports."""
