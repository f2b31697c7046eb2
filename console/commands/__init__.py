"""The command line: one module per command (`main` parses and dispatches; `auto`, `close`,
`adopt`, `confirm_change`, `credentials`, `info`, `demo`, and `state` for the commands over
the local state: held, exclude, replay, audit). Commands call flows (console/flows/) and may
start the TUI (`screens`); nothing below this package imports it."""
