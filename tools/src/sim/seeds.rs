//! SplitMix64: the one source of randomness in a simulation.
//!
//! Every seed in a run (the server's flow-table key and cell ISNs, each client interface's
//! ISN generator) is drawn from a SplitMix64 stream on the simulation seed, so a fixed seed
//! gives a bit-identical run. Hand-written, because its output must never change with a
//! dependency update.

pub use sirocco_drivers::rng::SplitMix64;

/// `len` deterministic pseudo-random bytes from `seed`.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = SplitMix64::new(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_a_deterministic_prefix_stream() {
        assert_eq!(bytes(7, 13), bytes(7, 20)[..13]);
        assert_ne!(bytes(7, 16), bytes(8, 16));
    }
}
