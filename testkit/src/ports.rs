//! Ports for servers a test starts itself.

use std::net::TcpListener;

/// A loopback port nothing listens on right now: the OS picks one, and the
/// listener is closed again before the caller binds it.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("the OS hands out a loopback port")
        .port()
}

/// A free loopback port below the kernel's ephemeral range, for a server a
/// test kills and restarts on the same port. A [`free_port`] comes from that
/// range, so while its server is down any outgoing connection may take it as
/// its local port and the restart fails with "address in use"; no outgoing
/// connection takes a port below the range.
pub fn restartable_port() -> u16 {
    let below = ephemeral_range_start().clamp(2_048, 32_768);
    let low = below / 2;
    let span = u32::from(below - low);
    // Start at a random offset (uuid's randomness; no rand dependency) so
    // tests running side by side try different ports first.
    let start = (uuid::Uuid::new_v4().as_u128() % u128::from(span)) as u32;
    (0..span)
        .map(|i| low + ((start + i) % span) as u16)
        .find(|port| TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .expect("a free loopback port below the ephemeral range")
}

/// The first port of `net.ipv4.ip_local_port_range` (Linux's default 32768).
fn ephemeral_range_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restartable_ports_are_free_and_below_the_ephemeral_range() {
        for _ in 0..20 {
            let port = restartable_port();
            assert!(port < ephemeral_range_start(), "{port}");
            assert!(TcpListener::bind(("127.0.0.1", port)).is_ok(), "{port}");
        }
    }
}
