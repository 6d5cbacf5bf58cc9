// live updates: to be written
