from stimmung.connectors.webhook.receiver import WebhookReceiver, make_app

__all__ = ["WebhookReceiver", "make_app"]
