"""Job files from other schedulers: pgAgent's catalog (`pgagent`; `store.pgagent_catalog`
reads it) and crontabs (`crontab`). The converters are pure: catalog rows or crontab text in,
job-file documents plus what could not be expressed out (`documents`). docs/migrating.md."""
