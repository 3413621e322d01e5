"""The notification inbox, watch settings and email delivery."""
