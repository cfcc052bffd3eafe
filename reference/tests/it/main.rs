//! Integration tests of the reference system against real RabbitMQ (`AMQP_URL`), SQLite,
//! MariaDB and Redis. One binary keeps compile and link times down.

mod api;
mod callbacks;
mod cli;
mod resilience;
mod retention;
mod stores;
mod submissions;
mod support;
mod tasks;
