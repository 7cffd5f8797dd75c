"""The ingest bridge: MQTT (paho-mqtt) -> Kafka (aiokafka), at-least-once, with
validation and a dead-letter topic for bad input."""
