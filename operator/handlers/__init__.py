"""kopf handlers: read the object, call a reconciler, act through the clients, set status."""
