//! The built-in demo: a local bearer-protected API and the example job
//! files that sync it (the same files as `jobs/demo_*.toml`, embedded so
//! `apisync demo` works from any folder).

mod server;

pub use server::{DEMO_TOKEN, DemoConfig, DemoServer, customer, event, order};

/// The demo job files: (file name, contents).
pub const DEMO_JOBS: [(&str, &str); 3] = [
    (
        "demo_customers.toml",
        include_str!("../../jobs/demo_customers.toml"),
    ),
    (
        "demo_orders.toml",
        include_str!("../../jobs/demo_orders.toml"),
    ),
    (
        "demo_events.toml",
        include_str!("../../jobs/demo_events.toml"),
    ),
];

/// The environment variable the demo jobs read their token from.
pub const DEMO_TOKEN_ENV: &str = "DEMO_API_TOKEN";

/// The port written in the demo job files.
pub const DEMO_PORT: u16 = 8787;
