//! A TCP fault proxy speaking Toxiproxy's HTTP API (being written).
