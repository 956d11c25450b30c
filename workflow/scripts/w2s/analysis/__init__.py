"""Tables, statistics, plots and the report, from finished cells."""
