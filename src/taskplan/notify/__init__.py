"""Notifications: which events go to which channels (rules), how each channel sends
(channels), and the sender that drains the store's outbox (sender). docs/operations.md."""
