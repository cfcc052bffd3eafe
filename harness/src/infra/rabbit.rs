//! Private RabbitMQ nodes and clusters started from the local `rabbitmq-server` installation (being written).
