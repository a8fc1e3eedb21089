//! Handles: a keyed permutation of sequence numbers, so that the next handle
//! cannot be told from the last, and (with the key kept in the state
//! directory) the same handle names the same resource after a restart.

/// A keyed permutation of the numbers below 2^52 (a four-round Feistel
/// network over two 26-bit halves, SipHash-2-4 as the round function):
/// sequence numbers in, handles out, and back. Distinct numbers give
/// distinct handles, so no handle is ever given twice, and without the key
/// the next handle cannot be told from the last.
///
/// The round function is SipHash written out here rather than the standard
/// library's hasher: that one's algorithm may change between Rust releases,
/// which would renumber every persisted handle after an upgrade.
#[derive(Clone)]
pub struct Handles {
    k0: u64,
    k1: u64,
}

impl std::fmt::Debug for Handles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Handles(..)")
    }
}

impl Default for Handles {
    /// A random key from the kernel, for a registry that lives only as
    /// long as the process.
    fn default() -> Self {
        let key = warden_core::fsx::random_bytes().unwrap_or_else(|_| {
            // No /dev/urandom (a bare chroot): the standard library's
            // per-process random keys, which come from getrandom.
            use std::hash::{BuildHasher, Hasher};
            let s = std::hash::RandomState::new();
            let (mut a, mut b) = (s.build_hasher(), s.build_hasher());
            a.write_u8(0);
            b.write_u8(1);
            let mut k = [0u8; 16];
            k[..8].copy_from_slice(&a.finish().to_le_bytes());
            k[8..].copy_from_slice(&b.finish().to_le_bytes());
            k
        });
        Handles::with_key(key)
    }
}

const HALF: u32 = 26;
const HALF_MASK: u64 = (1 << HALF) - 1;
const ROUNDS: u8 = 4;

impl Handles {
    /// The permutation keyed by `key` (as kept in the registry's key file).
    pub fn with_key(key: [u8; 16]) -> Self {
        let (a, b) = key.split_at(8);
        Handles {
            k0: u64::from_le_bytes(a.try_into().unwrap_or_default()),
            k1: u64::from_le_bytes(b.try_into().unwrap_or_default()),
        }
    }

    fn round(&self, round: u8, half: u64) -> u64 {
        // `half` is below 2^26: the round number fits in the top byte.
        let m = half | (u64::from(round) << 56);
        siphash24(self.k0, self.k1, &m.to_le_bytes()) & HALF_MASK
    }

    /// The handle of sequence number `seq` (below 2^52).
    pub fn encode(&self, seq: u64) -> u64 {
        let (mut l, mut r) = ((seq >> HALF) & HALF_MASK, seq & HALF_MASK);
        for i in 0..ROUNDS {
            (l, r) = (r, l ^ self.round(i, r));
        }
        (l << HALF) | r
    }

    /// The sequence number behind `handle`, if it can be one.
    pub fn decode(&self, handle: u64) -> Option<u64> {
        if handle >> (2 * HALF) != 0 {
            return None;
        }
        let (mut l, mut r) = ((handle >> HALF) & HALF_MASK, handle & HALF_MASK);
        for i in (0..ROUNDS).rev() {
            (l, r) = (r ^ self.round(i, l), l);
        }
        Some((l << HALF) | r)
    }
}

/// SipHash-2-4 of `msg` under the key (`k0`, `k1`).
fn siphash24(k0: u64, k1: u64, msg: &[u8]) -> u64 {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    fn sip_round(v: &mut [u64; 4]) {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }
    let compress = |v: &mut [u64; 4], m: u64| {
        v[3] ^= m;
        sip_round(v);
        sip_round(v);
        v[0] ^= m;
    };
    let mut chunks = msg.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        compress(&mut v, u64::from_le_bytes(w));
    }
    let mut last = [0u8; 8];
    let rest = chunks.remainder();
    last[..rest.len()].copy_from_slice(rest);
    last[7] = msg.len() as u8;
    compress(&mut v, u64::from_le_bytes(last));
    v[2] ^= 0xff;
    for _ in 0..4 {
        sip_round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siphash_matches_the_reference_vectors() {
        // From the SipHash paper's `vectors.h`: key 00..0f, messages 00..(n-1).
        let key: Vec<u8> = (0..16).collect();
        let h = Handles::with_key(key.try_into().unwrap());
        assert_eq!(siphash24(h.k0, h.k1, &[]), 0x726f_db47_dd0e_0e31);
        let msg: Vec<u8> = (0..8).collect();
        assert_eq!(siphash24(h.k0, h.k1, &msg), 0x93f5_f579_9a93_2462);
    }

    #[test]
    fn the_same_key_gives_the_same_handles() {
        let a = Handles::with_key([7; 16]);
        let b = Handles::with_key([7; 16]);
        let c = Handles::with_key([8; 16]);
        for seq in [1, 2, 1000, (1 << 52) - 1] {
            assert_eq!(a.encode(seq), b.encode(seq));
            assert_eq!(a.decode(a.encode(seq)), Some(seq));
        }
        assert_ne!(a.encode(1), c.encode(1));
    }
}
