"""Identity: staff tokens and device credentials, and keeping the MQTT broker's users in step
with them. ``service.py`` holds the use cases; ``ca.py`` (the device CA, with the
``cryptography`` package) and ``mosquitto.py`` (the broker's password, ACL and CRL files)
are the adapters below them."""
