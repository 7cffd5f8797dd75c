"""The MQTT downlink: commands to devices and their answers (``downlink/dispatcher.py``)."""
