//! Ports for servers a test starts itself.

/// A loopback port nothing listens on right now: the OS picks one, and the
/// listener is closed again before the caller binds it.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("the OS hands out a loopback port")
        .port()
}
