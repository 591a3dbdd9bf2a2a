"""Complaint-spike alerting: the Faust app that counts windows and raises alerts (``alerting``),
the spike detector (``spikes``), the event-time watermark (``watermark``) and the delivery
channels (``deliveries``: Alertmanager, Slack, Teams, PagerDuty, webhooks)."""
