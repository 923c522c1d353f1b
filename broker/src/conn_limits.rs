//! Pulsar's connection limits (`brokerMaxConnections`, `brokerMaxConnectionsPerIp`): counts of
//! the client connections held, in all and per IP address. A connection past either limit is
//! closed as it is accepted, before it costs a task or a buffer; a slot is given back when
//! its [`Slot`] drops, whatever way the connection ended (a panic included).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The counts; cheap to share between the accept loop and the connections.
#[derive(Debug, Default)]
pub struct ConnectionLimits {
    max: usize,
    max_per_ip: usize,
    held: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One connection's place in the counts.
#[derive(Debug)]
pub struct Slot {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `brokerMaxConnections` reached.
    Total,
    /// `brokerMaxConnectionsPerIp` reached for its address.
    PerIp,
}

impl ConnectionLimits {
    /// Limits of `max` in all and `max_per_ip` per address (0: none).
    pub fn new(max: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(ConnectionLimits {
            max,
            max_per_ip,
            held: Mutex::new((0, HashMap::new())),
        })
    }

    /// A slot for a connection from `ip`, or why there is none.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refused> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if self.max > 0 && held.0 >= self.max {
            return Err(Refused::Total);
        }
        let of_ip = held.1.get(&ip).copied().unwrap_or(0);
        if self.max_per_ip > 0 && of_ip >= self.max_per_ip {
            return Err(Refused::PerIp);
        }
        held.0 += 1;
        held.1.insert(ip, of_ip + 1);
        Ok(Slot {
            limits: self.clone(),
            ip,
        })
    }

    /// Connections held now.
    pub fn held(&self) -> usize {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).0
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.limits.held.lock().unwrap_or_else(|p| p.into_inner());
        held.0 = held.0.saturating_sub(1);
        if let Some(n) = held.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                held.1.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_and_per_ip_limits_and_slots_given_back() {
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let l = ConnectionLimits::new(3, 2);
        let s1 = l.admit(a).unwrap();
        let _s2 = l.admit(a).unwrap();
        assert_eq!(l.admit(a).unwrap_err(), Refused::PerIp);
        let _s3 = l.admit(b).unwrap();
        assert_eq!(l.admit(b).unwrap_err(), Refused::Total);
        drop(s1);
        assert_eq!(l.held(), 2);
        let _s4 = l.admit(a).unwrap();
        let open = ConnectionLimits::new(0, 0);
        let many: Vec<Slot> = (0..1000).map(|_| open.admit(a).unwrap()).collect();
        assert_eq!(open.held(), 1000);
        drop(many);
        assert_eq!(open.held(), 0);
        assert!(
            open.held.lock().unwrap().1.is_empty(),
            "no address left behind"
        );
    }
}
