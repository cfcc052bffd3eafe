//! Brokers in containers through testcontainers (being written).
