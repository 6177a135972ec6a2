#!/bin/bash
# As Kafka's own: runs a class with the Kafka jars on the class path.
exec java ${KAFKA_HEAP_OPTS:--Xmx256m} -Djava.awt.headless=true -cp '/opt/kafka/libs/*' "$@"
