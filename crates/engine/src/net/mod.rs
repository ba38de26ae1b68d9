//! Reaching servers: URLs (`endpoint`), TLS settings into rustls configs (`tls`), the byte
//! stream under a connection (`socket`), one RESP connection (`conn`), what a server says of
//! itself (`info`: INFO and CONFIG GET), Sentinel resolution (`sentinel`) and a cluster's nodes
//! and slots (`topology`).

pub mod conn;
pub mod endpoint;
pub mod info;
pub mod probe;
pub mod sentinel;
pub mod socket;
pub mod tls;
pub mod topology;
