//! A small xorshift generator: reproducible, dependency-free randomness for probe jitter,
//! tests and benchmarks. Not for anything an attacker must not predict.

/// xorshift64 (13, 7, 17). A zero state would stay zero, so seeds are made odd.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator from `seed` (any value).
    pub fn new(seed: u64) -> Self {
        XorShift(seed | 1)
    }

    /// The next raw value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A value in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}
