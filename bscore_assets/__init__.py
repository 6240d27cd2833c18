"""bscore's Dagster assets, checks, schedules, sensors and jobs, one folder per domain, and the CLI."""
