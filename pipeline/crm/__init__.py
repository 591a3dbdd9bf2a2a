"""Social CRM: consent to link authors to CRM contacts (``consent``), its HTTP API for CRM
systems (``consent_api``) and the case manager that routes mentions into team queues (``cases``)."""
