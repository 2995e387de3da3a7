"""The only code that talks to the Kubernetes API or to brokers; foreign errors end here."""
